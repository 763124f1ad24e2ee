"""core.headers.Headers against a plain model of S3's header rules: an ordered list of fields
whose names are matched without regard to case, changed only by making new lists."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from s3proxy.core.headers import Headers

NAMES = st.sampled_from(["Range", "range", "RANGE", "If-Match", "if-match", "x-amz-meta-a", "ETag"])
PAIRS = st.lists(st.tuples(NAMES, st.text(max_size=5)), max_size=12)


def _model_get_all(pairs: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in pairs if k.casefold() == name.casefold()]


@given(PAIRS, NAMES)
def test_lookups_ignore_case_and_keep_order(pairs: list[tuple[str, str]], name: str) -> None:
    headers = Headers(pairs)
    expected = _model_get_all(pairs, name)
    assert headers.get_all(name) == expected
    assert headers.get(name) == (expected[0] if expected else None)
    assert (name in headers) == bool(expected)
    assert list(headers) == pairs and len(headers) == len(pairs)


@given(PAIRS, st.lists(NAMES, max_size=3))
def test_without_drops_every_field_of_the_names_and_nothing_else(
    pairs: list[tuple[str, str]], names: list[str]
) -> None:
    headers = Headers(pairs)
    dropped = {n.lower() for n in names}
    assert list(headers.without(*names)) == [(k, v) for k, v in pairs if k.lower() not in dropped]
    assert list(headers) == pairs  # unchanged


@given(PAIRS, NAMES, st.text(max_size=5))
def test_replace_leaves_one_field_of_the_name_last(
    pairs: list[tuple[str, str]], name: str, value: str
) -> None:
    replaced = Headers(pairs).replace(name, value)
    assert replaced.get_all(name) == [value]
    assert list(replaced)[-1] == (name, value)
    assert list(replaced.without(name)) == list(Headers(pairs).without(name))


@given(PAIRS, PAIRS)
def test_plus_appends_and_equality_is_by_fields(
    first: list[tuple[str, str]], second: list[tuple[str, str]]
) -> None:
    joined = Headers(first).plus(second)
    assert list(joined) == first + second
    assert joined == Headers(first + second)
    assert (Headers(first) == Headers(second)) == (first == second)
    assert joined.pairs() == first + second
