"""The part list of a CompleteMultipartUpload against the upload's parts (core/partlist.py):
pure, no peers."""

from __future__ import annotations

import hashlib
import os

import pytest

from s3proxy.core.errors import IntegrityError, InvalidPart, InvalidPartOrder, MalformedXML
from s3proxy.core.format import Header, Trailer
from s3proxy.core.partlist import ListedPart, OwnPart, effective, expected_parts, expected_size
from s3proxy.core.sizes import DEFAULT_SEGMENT_SIZE


def _header(size: int) -> Header:
    return Header(DEFAULT_SEGMENT_SIZE, size, os.urandom(32), os.urandom(7), "vault:v1:x")


MD5S = {n: hashlib.md5(bytes([n])).digest() for n in (1, 2, 3)}
HEADERS = {n: _header(1000 * n) for n in (1, 2, 3)}
LISTED = {n: ListedPart(n, f'"stored{n}"', HEADERS[n].stored_length) for n in (1, 2, 3)}


def _own(numbers: set[int]) -> OwnPart:
    def own(n: int) -> tuple[str, Header, Trailer, bytes | None] | None:
        if n not in numbers:
            return None
        return LISTED[n].etag, HEADERS[n], Trailer(MD5S[n]), None

    return own


def _claim(n: int) -> tuple[int, str]:
    return n, f'"{MD5S[n].hex()}"'


def test_offsets_sizes_and_what_is_known_of_each_part() -> None:
    parts = expected_parts([_claim(1), (2, "stored2"), _claim(3)], LISTED, _own({1}))
    assert [p.offset for p in parts] == [0, LISTED[1].size, LISTED[1].size + LISTED[2].size]
    assert expected_size(parts) == sum(p.size for p in LISTED.values())
    assert parts[0].header == HEADERS[1] and parts[0].trailer == Trailer(MD5S[1])
    assert parts[1].claim is None  # the stored ETag: nothing of the plaintext to hold it to
    assert parts[2].claim == MD5S[3] and parts[2].header is None


@pytest.mark.parametrize(
    ("claimed", "error"),
    [
        ([], MalformedXML),
        ([_claim(2), _claim(1)], InvalidPartOrder),
        ([_claim(1), _claim(1), _claim(3), _claim(3), _claim(2)], InvalidPartOrder),
        ([(4, '"' + "0" * 32 + '"')], InvalidPart),  # not uploaded
        ([(1, "not-an-etag")], InvalidPart),
        ([(1, '"' + MD5S[2].hex() + '"')], InvalidPart),  # sealed here with another MD5
    ],
)
def test_refusals(claimed: list[tuple[int, str]], error: type[Exception]) -> None:
    with pytest.raises(error):
        expected_parts(claimed, LISTED, _own({1, 2, 3}))


def test_a_wrong_md5_of_a_part_sealed_elsewhere_is_left_for_after_completion() -> None:
    parts = expected_parts([(1, '"' + MD5S[2].hex() + '"')], LISTED, _own(set()))
    assert parts[0].claim == MD5S[2]


def test_a_part_named_twice_in_a_row_counts_once_the_last() -> None:
    claimed = [(1, '"' + "f" * 32 + '"'), _claim(1), _claim(2)]
    assert effective(claimed) == [_claim(1), _claim(2)]
    assert [p.number for p in expected_parts(claimed, LISTED, _own({1, 2}))] == [1, 2]


def test_a_listing_that_disagrees_with_the_sealed_size_is_an_integrity_error() -> None:
    lying = {**LISTED, 2: ListedPart(2, LISTED[2].etag, LISTED[2].size + 1)}
    with pytest.raises(IntegrityError):
        expected_parts([_claim(1), _claim(2)], lying, _own({2}))
