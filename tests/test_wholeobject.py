"""The v3 multipart manifest (docs/format.md, Version 3 multipart manifest): every field sealed
and read back, every byte authenticated, the record bound to its streams, and a tag value of at
most 256 characters."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from s3proxy.core.errors import IntegrityError
from s3proxy.core.footer import MetadataKey
from s3proxy.core.format import VERSION_3, Header, Trailer, parse_header
from s3proxy.core.layout import Layout
from s3proxy.core.objectinfo import ObjectChecksum, ObjectInfo
from s3proxy.core.wholeobject import (
    RECORD_SIZE,
    VALUE_LENGTH,
    WholeObject,
    check_layout,
    common_part_size,
    is_whole_record,
    open_whole,
    seal_whole,
    stream_digest,
    whole_key_version,
    whole_object_of,
)

MK = MetadataKey.derive(7, hashlib.sha256(b"an HMAC from Vault").digest())
OTHER_MK = MetadataKey.derive(7, hashlib.sha256(b"another transit key's HMAC").digest())


def _header(size: int, salt: int) -> Header:
    return Header(65536, size, bytes([salt]) * 16, bytes(7), "", version=VERSION_3, flags=2)


def _layout(sizes: list[int]) -> Layout:
    return Layout.from_headers([_header(n, i + 1) for i, n in enumerate(sizes)])


FACTS = WholeObject(
    stream_digest=bytes(range(32)),
    plaintext_size=3 * 5_000_000 + 1234,
    md5_of_md5s=bytes(range(100, 116)),
    parts=4,
    part_size=5_000_000,
    last_part_size=1234,
    checksum_algorithm="sha256",
    checksum_type="COMPOSITE",
    checksum=bytes(range(200, 232)),
    stored_size=15_002_000,
    last_salt=bytes(range(50, 66)),
)


def test_every_field_is_read_back() -> None:
    value = seal_whole(MK, FACTS)
    assert len(value) == VALUE_LENGTH <= 256 and "=" not in value
    assert is_whole_record(value) and whole_key_version(value) == 7
    assert open_whole(MK, value) == FACTS
    assert FACTS.etag == f'"{bytes(range(100, 116)).hex()}-4"'
    checksum = FACTS.object_checksum
    assert checksum is not None and checksum.value.endswith("-4")
    assert base64.b64decode(checksum.value[:-2]) == FACTS.checksum


@pytest.mark.parametrize(
    "algorithm,kind,size",
    [(None, None, 0), ("crc32", "FULL_OBJECT", 4), ("crc64nvme", "FULL_OBJECT", 8)],
)
def test_checksums_of_every_size(algorithm: str | None, kind: str | None, size: int) -> None:
    facts = dataclasses.replace(
        FACTS, checksum_algorithm=algorithm, checksum_type=kind, checksum=bytes(range(size))
    )
    opened = open_whole(MK, seal_whole(MK, facts))
    assert opened == facts
    if algorithm is None:
        assert opened.object_checksum is None
    else:
        assert opened.object_checksum == ObjectChecksum(
            algorithm, base64.b64encode(bytes(range(size))).decode(), "FULL_OBJECT"
        )


def test_each_byte_is_authenticated() -> None:
    data = base64.urlsafe_b64decode(seal_whole(MK, FACTS) + "==")
    assert len(data) == RECORD_SIZE
    for index in range(len(data)):
        changed = bytearray(data)
        changed[index] ^= 0x01
        value = base64.urlsafe_b64encode(bytes(changed)).decode().rstrip("=")
        with pytest.raises((IntegrityError, ValueError)):
            open_whole(MK, value)


def test_other_key_truncation_and_v2_values_are_refused() -> None:
    value = seal_whole(MK, FACTS)
    with pytest.raises(IntegrityError):
        open_whole(OTHER_MK, value)
    with pytest.raises(ValueError):
        open_whole(MetadataKey(8, MK.key), value)
    for bad in (value[:-1], value + "A", value[:-1] + "!", "x" * 43, ""):
        assert not is_whole_record(bad)
        with pytest.raises(IntegrityError):
            open_whole(MK, bad)


def test_malformed_facts_are_refused_when_sealed_or_opened() -> None:
    with pytest.raises(ValueError):
        seal_whole(MK, dataclasses.replace(FACTS, checksum=b"short"))
    with pytest.raises(ValueError):
        seal_whole(MK, dataclasses.replace(FACTS, checksum_type=None))
    # A record that says parts share a size its sizes do not add up to.
    with pytest.raises(IntegrityError):
        open_whole(MK, seal_whole(MK, dataclasses.replace(FACTS, plaintext_size=1)))
    with pytest.raises(IntegrityError):
        open_whole(MK, seal_whole(MK, dataclasses.replace(FACTS, parts=0, part_size=0)))


def _info(sizes: list[int]) -> ObjectInfo:
    layout = _layout(sizes)
    trailers = tuple(Trailer(hashlib.md5(bytes([i])).digest()) for i in range(len(sizes)))
    checksum = ObjectChecksum(
        "crc32", base64.b64encode(b"\x01\x02\x03\x04").decode() + "-3", "COMPOSITE"
    )
    return ObjectInfo(layout, trailers, None, checksum)


def test_the_facts_of_an_object_and_its_layout_bind() -> None:
    info = _info([100, 100, 7])
    facts = open_whole(MK, seal_whole(MK, whole_object_of(info)))
    md5s = b"".join(t.md5 for t in info.trailers if t is not None)
    assert facts.etag == f'"{hashlib.md5(md5s).hexdigest()}-3"'
    assert (facts.parts, facts.part_size, facts.last_part_size, facts.plaintext_size) == (
        3,
        100,
        7,
        207,
    )
    assert facts.stored_size == info.layout.stored_length
    assert facts.last_salt == info.layout.streams[-1].header.salt
    assert facts.object_checksum == info.checksum
    check_layout(facts, info.layout)


@pytest.mark.parametrize(
    "changed",
    [
        [100, 7, 100],  # reordered sizes
        [100, 100],  # a part dropped
        [100, 100, 7, 7],  # a part added
        [100, 101, 7],  # a size changed
    ],
)
def test_another_stream_list_does_not_bind(changed: list[int]) -> None:
    facts = whole_object_of(_info([100, 100, 7]))
    with pytest.raises(IntegrityError):
        check_layout(facts, _layout(changed))


def test_swapped_or_duplicated_streams_do_not_bind() -> None:
    layout = _layout([100, 100, 7])
    facts = whole_object_of(_info([100, 100, 7]))
    a, b, c = (s.header for s in layout.streams)
    for headers in ([b, a, c], [a, a, c], [a, b, _header(7, 9)]):
        with pytest.raises(IntegrityError):
            check_layout(facts, Layout.from_headers(headers))
    assert stream_digest(layout) != stream_digest(Layout.from_headers([b, a, c]))


def test_common_part_size() -> None:
    assert common_part_size([5, 5, 5, 2]) == 5
    assert common_part_size([5, 2]) == 5
    assert common_part_size([5, 4, 2]) == 0
    assert common_part_size([9]) == 0


DOC_V3 = json.loads((Path(__file__).parent / "vectors" / "format-v3.json").read_text())


def _facts(found: dict[str, Any]) -> WholeObject:
    return WholeObject(
        bytes.fromhex(found["stream_digest"]),
        found["plaintext_size"],
        bytes.fromhex(found["md5_of_md5s"]),
        found["parts"],
        found["part_size"],
        found["last_part_size"],
        found["checksum_algorithm"],
        found["checksum_type"],
        bytes.fromhex(found["checksum"]),
        found["stored_size"],
        bytes.fromhex(found["last_salt"]),
    )


@pytest.mark.parametrize("m", DOC_V3["manifests"], ids=[m["name"] for m in DOC_V3["manifests"]])
def test_stored_v3_manifest_vectors(m: dict[str, Any]) -> None:
    """Read byte for byte, and still written the same from the same inputs."""
    metadata_key = MetadataKey.derive(
        m["metadata_key_version"], bytes.fromhex(m["metadata_key_hmac"])
    )
    assert metadata_key.key.hex() == m["metadata_key"]
    facts = _facts(m["facts"])
    assert open_whole(metadata_key, m["manifest"]) == facts
    assert seal_whole(metadata_key, facts, bytes.fromhex(m["record_salt"])) == m["manifest"]
    by_name = {v["name"]: v for v in DOC_V3["vectors"]}
    streams = [bytes.fromhex(by_name[name]["stream"]) for name in m["streams"]]
    layout = Layout.from_headers([parse_header(s) for s in streams])
    check_layout(facts, layout)
    md5s = b"".join(bytes.fromhex(by_name[name]["md5"]) for name in m["streams"])
    assert facts.md5_of_md5s == hashlib.md5(md5s).digest()
    swapped = Layout.from_headers([parse_header(s) for s in reversed(streams)])
    with pytest.raises(IntegrityError):
        check_layout(facts, swapped)
