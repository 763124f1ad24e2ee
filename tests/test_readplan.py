"""core.readplan.plan_read, the one read path of GET, HEAD and ``?partNumber``, against S3's
rules written out here independently: conditions (412 before 304), then the part number, then
If-Range, then Range (416 past the end, an ignored Range serves the whole object)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from s3proxy.core.errors import (
    InvalidArgument,
    InvalidPartNumber,
    InvalidRequest,
    NotImplementedByProxy,
    PreconditionFailed,
    RangeError,
)
from s3proxy.core.format import Header
from s3proxy.core.layout import Layout, StreamInfo
from s3proxy.core.marker import Marker
from s3proxy.core.objectinfo import ObjectChecksum, ObjectInfo
from s3proxy.core.readplan import NOT_MODIFIED, ReadQuery, content_range, plan_read

SEGMENT = 64
ETAG = '"0123456789abcdef0123456789abcdef"'
OTHER = '"ffffffffffffffffffffffffffffffff"'
MODIFIED = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
EARLIER = "Sun, 31 May 2026 12:00:00 GMT"
LATER = "Tue, 02 Jun 2026 12:00:00 GMT"
CHECKSUM = ObjectChecksum("crc32", "AAAAAA==", "FULL_OBJECT")


def _info(parts: list[int], checksum: bool) -> ObjectInfo:
    streams, stored, plain = [], 0, 0
    for length in parts:
        header = Header(SEGMENT, length, b"s" * 16, b"n" * 7, "vault:v1:k")
        streams.append(StreamInfo(stored, plain, header))
        stored += header.stored_length
        plain += length
    layout = Layout(tuple(streams))
    return ObjectInfo(layout, (None,) * len(parts), ETAG, CHECKSUM if checksum else None)


def _marker(parts: list[int]) -> Marker:
    return Marker(SEGMENT, len(parts) > 1, version=2)


CONDITIONS = st.lists(
    st.sampled_from(
        [
            ("If-Match", ETAG),
            ("If-Match", OTHER),
            ("If-Match", "*"),
            ("If-None-Match", ETAG),
            ("If-None-Match", OTHER),
            ("If-Unmodified-Since", EARLIER),
            ("If-Unmodified-Since", LATER),
            ("If-Modified-Since", EARLIER),
            ("If-Modified-Since", LATER),
        ]
    ),
    max_size=3,
    unique_by=lambda c: c[0],
)
RANGES = st.one_of(
    st.none(),
    st.tuples(st.integers(0, 700), st.one_of(st.none(), st.integers(0, 700))).map(
        lambda r: f"bytes={r[0]}-{'' if r[1] is None else r[1]}"
    ),
    st.integers(0, 700).map(lambda n: f"bytes=-{n}"),
    st.sampled_from(["bytes=1-2,4-5", "items=0-1", "bytes=x-1", "bytes=-"]),
)
IF_RANGES = st.sampled_from([None, ETAG, OTHER, "W/" + ETAG, "Mon, 01 Jun 2026 12:00:00 GMT"])
PARTS = st.lists(st.integers(0, 300), min_size=1, max_size=4)


def _expected_conditions(conditions: list[tuple[str, str]]) -> int | None:
    given_ = dict(conditions)
    if "If-Match" in given_:
        if given_["If-Match"] not in (ETAG, "*"):
            return 412
    elif given_.get("If-Unmodified-Since") == EARLIER:  # modified after it
        return 412
    if "If-None-Match" in given_:
        if given_["If-None-Match"] == ETAG:
            return 304
    elif given_.get("If-Modified-Since") == LATER:  # not modified since
        return 304
    return None


def _expected_span(range_value: str | None, if_range: str | None, total: int) -> Any:
    """None: the whole object; (first, last); or 416."""
    if range_value is None:
        return None
    if if_range is not None and if_range not in (ETAG, "Mon, 01 Jun 2026 12:00:00 GMT"):
        return None
    spec = range_value.removeprefix("bytes=")
    if not range_value.startswith("bytes=") or "," in spec:
        return None
    first_text, _, last_text = spec.partition("-")
    if not first_text.isdigit() and first_text:
        return None
    if not last_text.isdigit() and last_text:
        return None
    if not first_text:
        if not last_text:
            return None
        suffix = int(last_text)
        if suffix == 0:
            return 416
        if total == 0:
            return None  # no byte to select: the whole (empty) object, 200
        return (max(0, total - suffix), total - 1)
    first = int(first_text)
    if first >= total:
        return 416
    last = total - 1 if not last_text else min(int(last_text), total - 1)
    return None if first > last else (first, last)


@given(PARTS, CONDITIONS, RANGES, IF_RANGES, st.booleans(), st.booleans(), st.booleans())
@example([10], [("If-Match", OTHER), ("If-None-Match", ETAG)], "bytes=99-", None, True, True, True)
@example([0], [], "bytes=0-", None, True, True, False)
@example([0], [], "bytes=-1", None, True, True, False)
def test_whole_and_ranged_reads_answer_as_s3(
    parts: list[int],
    conditions: list[tuple[str, str]],
    range_value: str | None,
    if_range: str | None,
    checksum_mode: bool,
    body: bool,
    has_checksum: bool,
) -> None:
    info = _info(parts, has_checksum)
    total = sum(parts)
    query = ReadQuery(range_value, tuple(conditions), if_range, None, checksum_mode, body)
    verdict = _expected_conditions(conditions)
    span = _expected_span(range_value, if_range, total)
    if verdict == 412:
        with pytest.raises(PreconditionFailed):
            plan_read(query, info, _marker(parts), ETAG, MODIFIED)
        return
    if verdict == 304:
        answer = plan_read(query, info, _marker(parts), ETAG, MODIFIED)
        assert answer.status == NOT_MODIFIED and answer.plan is None
        return
    if span == 416:
        with pytest.raises(RangeError):
            plan_read(query, info, _marker(parts), ETAG, MODIFIED)
        return
    answer = plan_read(query, info, _marker(parts), ETAG, MODIFIED)
    assert answer.etag == ETAG
    assert (answer.plan is not None) == body
    if span is None:
        assert (answer.status, answer.length, answer.content_range) == (200, total, None)
        assert answer.headers == (CHECKSUM.headers if checksum_mode and has_checksum else [])
    else:
        first, last = span
        assert answer.status == 206 and answer.length == last - first + 1
        assert answer.content_range == f"bytes {first}-{last}/{total}"
        assert answer.headers == []  # a range never carries the whole object's checksum
    if answer.plan is not None:
        assert answer.plan.length == answer.length
        assert sum(p.take for p in answer.plan.pieces) == answer.length


@given(PARTS, st.integers(1, 6), CONDITIONS, st.booleans())
def test_part_reads_answer_as_s3(
    parts: list[int], number: int, conditions: list[tuple[str, str]], body: bool
) -> None:
    info = _info(parts, False)
    marker = _marker(parts)
    stored_etag = f'"{"a" * 32}-{len(parts)}"' if len(parts) > 1 else ETAG
    query = ReadQuery(None, tuple(conditions), None, number, False, body)
    verdict = _expected_conditions(conditions)
    if verdict == 412:
        with pytest.raises(PreconditionFailed):
            plan_read(query, info, marker, stored_etag, MODIFIED)
        return
    if verdict == 304:
        assert plan_read(query, info, marker, stored_etag, MODIFIED).status == NOT_MODIFIED
        return
    if number > len(parts):
        with pytest.raises(InvalidPartNumber):
            plan_read(query, info, marker, stored_etag, MODIFIED)
        return
    answer = plan_read(query, info, marker, stored_etag, MODIFIED)
    first = sum(parts[: number - 1])
    length = parts[number - 1]
    assert answer.status == 206 and answer.length == length
    counted = [("x-amz-mp-parts-count", str(len(parts)))] if len(parts) > 1 else []
    assert answer.headers == counted
    if length:
        assert answer.content_range == content_range(first, first + length - 1, sum(parts))
        assert (answer.plan is not None) == body
    else:
        assert answer.content_range is None and answer.plan is None


def test_a_multipart_object_with_copied_parts_has_no_part_reads() -> None:
    parts = [100, 100]
    query = ReadQuery(part_number=1, conditions=(("If-Match", OTHER),))
    with pytest.raises(NotImplementedByProxy):  # before the conditions, as before plan_read
        plan_read(query, _info(parts, False), _marker(parts), f'"{"a" * 32}-3"', MODIFIED)


def test_the_query_of_a_part_read_is_checked_before_anything_is_read() -> None:
    with pytest.raises(InvalidArgument):
        ReadQuery.of({}, [], part_number="0")
    with pytest.raises(InvalidArgument):
        ReadQuery.of({}, [], part_number="10001")
    with pytest.raises(InvalidRequest):
        ReadQuery.of({"Range": "bytes=0-1"}, [], part_number="1")
    query = ReadQuery.of({"x-amz-checksum-mode": "enabled"}, [], part_number="2", body=False)
    assert (query.part_number, query.checksum_mode, query.body) == (2, True, False)
