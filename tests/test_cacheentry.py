"""Entries of the shared metadata cache (s3proxy/core/cacheentry.py): the facts round-trip, an
entry opens only under its metadata key and for exactly the object it was written for, any
altered byte fails, and cache names hide object names."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3proxy.core.cacheentry import (
    CACHE_NAME_PREFIX,
    MAX_CHECKSUM,
    MAX_ENTRY_SIZE,
    MAX_ETAG,
    ObjectFacts,
    ObjectIdentity,
    cache_name,
    entry_key_version,
    open_entry,
    seal_entry,
)
from s3proxy.core.checksums import CHECKSUM_ALGORITHMS
from s3proxy.core.errors import IntegrityError
from s3proxy.core.footer import MetadataKey

MK = MetadataKey.derive(4, hashlib.sha256(b"an HMAC from Vault").digest())
OTHER_MK = MetadataKey.derive(4, hashlib.sha256(b"another transit key's HMAC").digest())
# the same key bytes under another version: only the version in the clear part tells them apart
MK_5 = MetadataKey.derive(5, hashlib.sha256(b"an HMAC from Vault").digest())
IDENTITY = ObjectIdentity("bucket", "a/key.bin", "", '"0123456789abcdef0123456789abcdef"', 1234)
FACTS = ObjectFacts(
    1000, '"fedcba9876543210fedcba9876543210-3"', "crc32c", "AAAAAA==-3", "COMPOSITE"
)

printable = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)
facts_strategy = st.builds(
    lambda size, etag, checksum, kind: ObjectFacts(
        size,
        etag,
        checksum[0] if checksum else None,
        checksum[1] if checksum else None,
        kind if checksum else None,
    ),
    st.integers(0, 2**63 - 1),
    printable.filter(lambda s: len(s) <= MAX_ETAG),
    st.none() | st.tuples(st.sampled_from(CHECKSUM_ALGORITHMS), printable.map(lambda s: s[:50])),
    st.none() | st.sampled_from(["COMPOSITE", "FULL_OBJECT"]),
)
identities = st.builds(
    ObjectIdentity, st.text(), st.text(), st.text(), st.text(), st.integers(0, 2**63 - 1)
)


@settings(max_examples=200, deadline=None)
@given(facts_strategy)
def test_facts_round_trip(facts: ObjectFacts) -> None:
    assert ObjectFacts.decode(facts.encode()) == facts


@settings(max_examples=200, deadline=None)
@given(facts_strategy, identities)
def test_entry_round_trip(facts: ObjectFacts, identity: ObjectIdentity) -> None:
    blob = seal_entry(MK, identity, facts)
    assert len(blob) <= MAX_ENTRY_SIZE
    assert entry_key_version(blob) == 4
    assert open_entry(MK, identity, blob) == facts


def test_facts_of_the_largest_size_fit() -> None:
    facts = ObjectFacts(2**63 - 1, "e" * MAX_ETAG, "sha256", "c" * MAX_CHECKSUM, "FULL_OBJECT")
    blob = seal_entry(MK, IDENTITY, facts)
    assert len(blob) == MAX_ENTRY_SIZE
    assert open_entry(MK, IDENTITY, blob) == facts


@pytest.mark.parametrize(
    "change",
    [
        {"bucket": "bucket2"},
        {"bucket": "bucke"},
        {"key": "a/key.bin "},
        {"key": "A/key.bin"},
        {"version_id": "v1"},
        {"stored_etag": '"0123456789abcdef0123456789abcdee"'},
        {"stored_size": 1235},
        {"stored_size": 0},
    ],
)
def test_an_entry_opens_for_its_object_only(change: dict[str, object]) -> None:
    blob = seal_entry(MK, IDENTITY, FACTS)
    with pytest.raises(IntegrityError):
        open_entry(MK, dataclasses.replace(IDENTITY, **change), blob)  # type: ignore[arg-type]


def test_identity_fields_do_not_run_into_each_other() -> None:
    """Moving a character from one field to the next changes the encoding."""
    a = ObjectIdentity("ab", "c", "", "e", 1)
    b = ObjectIdentity("a", "bc", "", "e", 1)
    assert a.encode() != b.encode()
    with pytest.raises(IntegrityError):
        open_entry(MK, b, seal_entry(MK, a, FACTS))


def test_every_bit_flip_fails() -> None:
    blob = seal_entry(MK, IDENTITY, FACTS)
    for index in range(len(blob)):
        for bit in range(8):
            altered = bytearray(blob)
            altered[index] ^= 1 << bit
            with pytest.raises(IntegrityError):
                open_entry(MK, IDENTITY, bytes(altered))


def test_truncated_or_extended_entries_fail() -> None:
    blob = seal_entry(MK, IDENTITY, FACTS)
    for length in range(len(blob)):
        with pytest.raises(IntegrityError):
            open_entry(MK, IDENTITY, blob[:length])
    for extra in (b"\x00", b"\x00" * 16, b"\x00" * MAX_ENTRY_SIZE):
        with pytest.raises(IntegrityError):
            open_entry(MK, IDENTITY, blob + extra)


def test_the_wrong_key_fails() -> None:
    blob = seal_entry(MK, IDENTITY, FACTS)
    with pytest.raises(IntegrityError):
        open_entry(OTHER_MK, IDENTITY, blob)  # same version, another transit key
    with pytest.raises(IntegrityError):
        open_entry(MK_5, IDENTITY, blob)  # another version
    assert entry_key_version(seal_entry(MK_5, IDENTITY, FACTS)) == 5


def test_salts_are_fresh_and_given_salts_are_used() -> None:
    assert seal_entry(MK, IDENTITY, FACTS) != seal_entry(MK, IDENTITY, FACTS)
    salt = bytes(range(16))
    blob = seal_entry(MK, IDENTITY, FACTS, salt)
    assert blob == seal_entry(MK, IDENTITY, FACTS, salt)
    assert blob[:4] == b"S3PC"
    assert blob[4:25] == bytes([1]) + (4).to_bytes(4, "big") + salt
    with pytest.raises(ValueError):
        seal_entry(MK, IDENTITY, FACTS, b"short")


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"S3PC",
        b"XXXX" + bytes(60),
        b"S3PC\x02" + bytes(60),  # another format
        b"S3PC\x01\x00\x00\x00\x00" + bytes(60),  # key version 0
    ],
)
def test_malformed_entries_name_no_key_version(blob: bytes) -> None:
    with pytest.raises(IntegrityError):
        entry_key_version(blob)


@pytest.mark.parametrize(
    "arguments",
    [
        (-1, '"e"', None, None, None),
        (2**63, '"e"', None, None, None),
        (0, "", None, None, None),
        (0, "with space", None, None, None),
        (0, "é", None, None, None),
        (0, "e" * (MAX_ETAG + 1), None, None, None),
        (0, '"e"', "md5", "AAAA", None),
        (0, '"e"', "crc32", None, None),
        (0, '"e"', None, "AAAA", None),
        (0, '"e"', "crc32", "", None),
        (0, '"e"', "crc32", "c" * (MAX_CHECKSUM + 1), None),
        (0, '"e"', "crc32", "AAAA", "PARTIAL"),
        (0, '"e"', None, None, "FULL_OBJECT"),
    ],
)
def test_invalid_facts_are_refused(arguments: tuple[object, ...]) -> None:
    with pytest.raises(ValueError):
        ObjectFacts(*arguments)  # type: ignore[arg-type]


def test_malformed_facts_fail_to_decode() -> None:
    good = FACTS.encode()
    bad = [
        b"",
        good[:-1],
        good + b"\x00",
        b"\x02" + good[1:],  # another format
        good[:10] + b"\xff" + good[11:],  # an ETag running past the end
        good[:9] + b"\x02" + good[10:],  # two hidden tags
        good[:-1] + b"\x03",  # an unknown checksum type
        ObjectFacts(1, '"e"').encode()[:-3] + b"\x09\x00\x00",  # an unknown algorithm
        ObjectFacts(1, '"e"').encode()[:-3] + b"\x01\x00\x00",  # an algorithm, no checksum
        ObjectFacts(1, '"e"').encode()[:-3] + b"\x00\x01A\x00",  # a checksum, no algorithm
        ObjectFacts(1, '"e"').encode()[:-3] + b"\x00\x00\x01",  # a type, no checksum
        ObjectFacts(1, '"e"').encode()[:11] + b"\xe9" + ObjectFacts(1, '"e"').encode()[12:],
    ]
    for data in bad:
        with pytest.raises(IntegrityError):
            ObjectFacts.decode(data)


def test_facts_without_checksum_round_trip() -> None:
    facts = ObjectFacts(0, '"d41d8cd98f00b204e9800998ecf8427e"')
    assert ObjectFacts.decode(facts.encode()) == facts
    assert open_entry(MK, IDENTITY, seal_entry(MK, IDENTITY, facts)) == facts


def test_cache_names_hide_object_names_and_differ() -> None:
    name = cache_name(MK, "bucket", "a/key.bin")
    assert name.startswith(CACHE_NAME_PREFIX)
    digest = name[len(CACHE_NAME_PREFIX) :]
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert "bucket" not in name and "key" not in name
    assert name == cache_name(MK, "bucket", "a/key.bin")  # every proxy finds the same entry
    others = {
        cache_name(MK, "bucket", "a/key.bin2"),
        cache_name(MK, "bucke", "ta/key.bin"),  # the bucket's length is part of the input
        cache_name(MK, "bucket2", "a/key.bin"),
        cache_name(OTHER_MK, "bucket", "a/key.bin"),
    }
    assert name not in others and len(others) == 4


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=20), st.text(max_size=20), st.text(max_size=20), st.text(max_size=20))
def test_cache_names_are_injective(b1: str, k1: str, b2: str, k2: str) -> None:
    if (b1, k1) != (b2, k2):
        assert cache_name(MK, b1, k1) != cache_name(MK, b2, k2)
