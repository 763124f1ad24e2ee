"""Size and range arithmetic of the format, with plain integers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3proxy.core.sizes import (
    HEADER_SIZE,
    TAG_SIZE,
    TRAILER_SIZE,
    RangeNotSatisfiable,
    ciphertext_length,
    parse_range,
    plaintext_length,
    segment_count,
    segment_plaintext_length,
    span_for_range,
)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("seg", [1, 2, 3, 16, 17, 64])
def test_lengths_invert_and_every_other_size_is_rejected(seg: int, version: int) -> None:
    valid = {}
    for p in range(0, 20 * seg + 3):
        c = ciphertext_length(p, seg, version)
        assert plaintext_length(c, seg, version) == p
        valid[c] = p
    for c in range(0, max(valid) + 1):
        if c in valid:
            continue
        with pytest.raises(ValueError):
            plaintext_length(c, seg, version)


def test_known_sizes_for_default_segments() -> None:
    s = 65536
    assert ciphertext_length(0, s, 1) == HEADER_SIZE + TAG_SIZE == 272
    assert ciphertext_length(1, s, 1) == 273
    assert ciphertext_length(s, s, 1) == HEADER_SIZE + s + TAG_SIZE
    assert ciphertext_length(s + 1, s, 1) == HEADER_SIZE + s + 1 + 2 * TAG_SIZE
    assert ciphertext_length(0, s, 2) == HEADER_SIZE + TAG_SIZE + TRAILER_SIZE == 352
    assert ciphertext_length(s + 1, s, 2) == HEADER_SIZE + s + 1 + 2 * TAG_SIZE + 80
    assert segment_count(0, s) == 1
    assert segment_count(3 * s + 5, s) == 4


@given(
    seg=st.integers(1, 100),
    size=st.integers(1, 2000),
    data=st.data(),
)
def test_span_covers_exactly_the_range(seg: int, size: int, data: st.DataObject) -> None:
    first = data.draw(st.integers(0, size - 1))
    last = data.draw(st.integers(first, size - 1))
    span = span_for_range(first, last, size, seg)
    assert span.first_segment == first // seg and span.last_segment == last // seg
    fetched = span.ciphertext_end - span.ciphertext_start + 1
    segments = range(span.first_segment, span.last_segment + 1)
    assert fetched == sum(segment_plaintext_length(i, size, seg) + TAG_SIZE for i in segments)
    assert span.ciphertext_start == HEADER_SIZE + span.first_segment * (seg + TAG_SIZE)
    assert span.ciphertext_end < ciphertext_length(size, seg, 1)
    assert span.skip == first % seg and span.length == last - first + 1


@pytest.mark.parametrize(
    ("header", "total", "expected"),
    [
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=10-", 100, (10, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-1000", 100, (0, 99)),
        ("bytes=50-1000", 100, (50, 99)),
        ("bytes=99-99", 100, (99, 99)),
        ("bytes=9-0", 100, None),  # ends before it starts: ignored, like S3
        ("bytes=0-1,5-6", 100, None),  # several ranges: whole object
        ("items=0-1", 100, None),
        ("bytes=a-b", 100, None),
        ("bytes=-5", 0, None),  # suffix of an empty object: whole (empty) object
    ],
)
def test_parse_range(header: str, total: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, total) == expected


@pytest.mark.parametrize(
    ("header", "total"),
    [("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=-0", 100), ("bytes=0-", 0)],
)
def test_unsatisfiable_ranges(header: str, total: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, total)
