"""Multipart objects in format v3 (docs/format.md, Version 3 multipart manifest), with the proxy
in the test process in front of the playbook's fake upstream: parts written as v3 streams, the
manifest tag a sealed record of the whole object, a cold HEAD answered from that record and the
last part's footer (2 requests), and whatever does not bind left to the full look-up, never
answered wrongly. Objects of v2 parts, as older proxies write them, still complete and read."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3proxy.core.format import parse_header
from s3proxy.core.manifest import MANIFEST_TAG
from s3proxy.core.request import Target
from s3proxy.core.sizes import HEADER_SIZE, ciphertext_length
from s3proxy.core.wholeobject import WholeObject, is_whole_record, open_whole, whole_key_version
from s3proxy.store.ends import EndReader
from tests.inproc import Harness, InProcProxy
from tests.playbook import GET, Unordered
from tests.test_inproc_requests import (
    FIRST,
    TAIL,
    S,
    boundary,
    multipart_etag,
    status,
    upload,
)

PARTS = [200_000, 200_000, 1000]


def _offsets(sizes: list[int], version: int) -> tuple[list[int], int]:
    offsets, at = [], 0
    for n in sizes:
        offsets.append(at)
        at += ciphertext_length(n, S, version)
    return offsets, at


def _manifest(harness: Harness, key: str) -> str:
    return dict(harness.store.get("b", key).tags)[MANIFEST_TAG]


def _marker(headers: list[tuple[str, str]]) -> str:
    return {k.lower(): v for k, v in headers}["x-amz-meta-s3proxy-encryption"]


def _facts(harness: Harness, proxy: InProcProxy, key: str) -> WholeObject:
    """The object's v3 manifest, opened with the metadata key it names."""
    value = _manifest(harness, key)
    assert proxy.keys is not None
    return open_whole(harness.run(proxy.keys.metadata_key(whole_key_version(value))), value)


@contextmanager
def _v2_parts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Parts (and the CreateMultipartUpload marker) as a proxy of the previous release
    writes them: format v2."""
    with monkeypatch.context() as patched:
        patched.setattr("s3proxy.server.writes.PART_VERSION", 2)
        yield


def _head(proxy: InProcProxy, key: str) -> dict[str, Any]:
    found: dict[str, Any] = proxy.client.head_object(Bucket="b", Key=key, ChecksumMode="ENABLED")
    return found


def test_parts_are_v3_and_complete_writes_the_whole_object_record(harness: Harness) -> None:
    writer = harness.proxy()
    parts = [os.urandom(n) for n in PARTS]
    etag = upload(writer, "m", parts, ChecksumAlgorithm="CRC32")
    assert etag == multipart_etag(parts)
    kept = harness.store.get("b", "m")
    offsets, total = _offsets(PARTS, 3)
    assert len(kept.data) == total
    headers = [parse_header(kept.data[o : o + HEADER_SIZE]) for o in offsets]
    assert [h.version for h in headers] == [3, 3, 3]
    assert _marker(kept.headers).startswith("v=3;")
    value = _manifest(harness, "m")
    assert is_whole_record(value) and len(value) <= 256
    facts = _facts(harness, writer, "m")
    assert facts.etag == etag and facts.parts == 3
    assert (facts.part_size, facts.last_part_size) == (200_000, 1000)
    assert facts.plaintext_size == sum(PARTS) and facts.stored_size == total
    assert facts.last_salt == headers[-1].salt
    crcs = b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts)
    assert facts.checksum == zlib.crc32(crcs).to_bytes(4, "big")
    assert (facts.checksum_algorithm, facts.checksum_type) == ("crc32", "COMPOSITE")


@pytest.mark.parametrize(
    "create", [{}, {"ChecksumAlgorithm": "CRC32"}, {"ChecksumAlgorithm": "CRC64NVME"}]
)
def test_a_cold_head_is_the_record_and_the_last_footer(
    harness: Harness, create: dict[str, str]
) -> None:
    writer, other = harness.proxy(), harness.proxy()
    parts = [os.urandom(n) for n in PARTS]
    upload(writer, "m", parts, **create)
    with harness.book.expect(TAIL("/b/m")):
        mine = _head(writer, "m")  # (the writer: from its cache)
    with harness.book.expect(TAIL("/b/m"), GET("/b/m?tagging")):
        seen = _head(other, "m")
    for field in ("ETag", "ContentLength", "ChecksumCRC32", "ChecksumCRC64NVME", "ChecksumType"):
        assert seen.get(field) == mine.get(field), field
    assert seen["ContentLength"] == sum(PARTS) and seen["ETag"] == multipart_etag(parts)
    if create.get("ChecksumAlgorithm") == "CRC32":
        assert seen["ChecksumType"] == "COMPOSITE" and seen["ChecksumCRC32"].endswith("-3")
    # Not cached (no stream key in it): the next HEAD asks again, the same 2 requests.
    with harness.book.expect(TAIL("/b/m"), GET("/b/m?tagging")):
        assert _head(other, "m")["ETag"] == seen["ETag"]


def test_parts_of_different_sizes(harness: Harness) -> None:
    """A record whose parts do not share a size gives no layout: the full look-up answers."""
    writer, other = harness.proxy(), harness.proxy()
    sizes = [150_000, 200_000, 1000]
    parts = [os.urandom(n) for n in sizes]
    upload(writer, "m", parts)
    assert _facts(harness, writer, "m").part_size == 0
    with harness.book.anything():
        head = _head(other, "m")
    assert head["ContentLength"] == sum(sizes) and head["ETag"] == multipart_etag(parts)


def test_get_of_a_v3_multipart_object(harness: Harness) -> None:
    writer, reader = harness.proxy(), harness.proxy()
    parts = [os.urandom(n) for n in PARTS]
    joined = b"".join(parts)
    upload(writer, "m", parts, ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")
    with harness.book.anything():
        got = reader.client.get_object(Bucket="b", Key="m", ChecksumMode="ENABLED")
        assert got["Body"].read() == joined
    assert got["ETag"] == multipart_etag(parts)
    assert got["ChecksumCRC32"] == base64.b64encode(zlib.crc32(joined).to_bytes(4, "big")).decode()
    assert got["ChecksumType"] == "FULL_OBJECT"
    with harness.book.anything():
        ranged = reader.client.get_object(Bucket="b", Key="m", Range="bytes=199990-200009")
        assert ranged["Body"].read() == joined[199990:200010]


def test_a_v2_multipart_object_still_completes_and_reads(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = harness.proxy(), harness.proxy()
    parts = [os.urandom(n) for n in PARTS]
    with _v2_parts(monkeypatch):
        etag = upload(writer, "m", parts)
    kept = harness.store.get("b", "m")
    assert _marker(kept.headers).startswith("v=2;")
    assert not is_whole_record(_manifest(harness, "m"))  # v2's HMAC
    offsets, total = _offsets(PARTS, 2)
    assert len(kept.data) == total
    # A cold HEAD of it: its end (no footer there), then the layout's reads as before v3.
    with harness.book.expect(
        TAIL("/b/m"),
        GET("/b/m", Range=FIRST, If_Match=kept.etag),
        Unordered(*(GET("/b/m", Range=boundary(o), If_Match=kept.etag) for o in offsets[1:])),
        GET("/b/m?tagging"),
    ):
        head = _head(reader, "m")
    assert head["ContentLength"] == sum(PARTS) and head["ETag"] == etag
    with harness.book.expect(GET("/b/m")):
        assert reader.client.get_object(Bucket="b", Key="m")["Body"].read() == b"".join(parts)


def test_v2_and_v3_parts_in_one_upload(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload begun by a proxy of the previous release and ended by this one (or the other
    way): its parts are v2 and v3, its manifest v2's, and it reads."""
    old, new, reader = harness.proxy(), harness.proxy(), harness.proxy()
    parts = [os.urandom(n) for n in PARTS]
    with harness.book.anything():
        with _v2_parts(monkeypatch):
            uid = old.client.create_multipart_upload(Bucket="b", Key="m")["UploadId"]
            first = old.client.upload_part(
                Bucket="b", Key="m", UploadId=uid, PartNumber=1, Body=parts[0]
            )["ETag"]
        rest = [
            new.client.upload_part(Bucket="b", Key="m", UploadId=uid, PartNumber=n, Body=p)["ETag"]
            for n, p in ((2, parts[1]), (3, parts[2]))
        ]
        done = new.client.complete_multipart_upload(
            Bucket="b",
            Key="m",
            UploadId=uid,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": n, "ETag": e} for n, e in enumerate([first, *rest], start=1)
                ]
            },
        )
        assert done["ETag"] == multipart_etag(parts)
        assert not is_whole_record(_manifest(harness, "m"))
        assert reader.client.get_object(Bucket="b", Key="m")["Body"].read() == b"".join(parts)
        assert _head(harness.proxy(), "m")["ETag"] == done["ETag"]


def _other_record(harness: Harness, writer: InProcProxy) -> str:
    """The manifest of another object with parts of the same sizes."""
    upload(writer, "other", [os.urandom(n) for n in PARTS])
    return _manifest(harness, "other")


def _altered(value: str) -> str:
    data = bytearray(base64.urlsafe_b64decode(value + "=="))
    data[100] ^= 1
    return base64.urlsafe_b64encode(bytes(data)).decode().rstrip("=")


@pytest.mark.parametrize("change", ["swapped", "altered", "removed", "v2 value"])
def test_a_tag_that_does_not_bind_is_never_an_answer(harness: Harness, change: str) -> None:
    """The HEAD falls back to the full look-up, which refuses the object (its streams do not
    match the manifest); neither a size nor an ETag of another object comes out."""
    writer, other = harness.proxy(), harness.proxy()
    parts = [os.urandom(n) for n in PARTS]
    upload(writer, "m", parts)
    kept = harness.store.get("b", "m")
    value = _manifest(harness, "m")
    tags = {
        "swapped": [(MANIFEST_TAG, _other_record(harness, writer))],
        "altered": [(MANIFEST_TAG, _altered(value))],
        "removed": [],
        "v2 value": [(MANIFEST_TAG, hashlib.sha256(b"x").hexdigest()[:43])],
    }[change]
    kept.tags = tags
    offsets, _ = _offsets(PARTS, 3)
    with (
        harness.book.expect(
            TAIL("/b/m"),
            GET("/b/m?tagging"),
            GET("/b/m", Range=FIRST, If_Match=kept.etag),
            Unordered(*(GET("/b/m", Range=boundary(o), If_Match=kept.etag) for o in offsets[1:])),
            GET("/b/m?tagging"),
        ),
        pytest.raises(ClientError) as err,
    ):
        _head(other, "m")
    assert status(err) == 500


def test_a_record_of_another_object_with_the_same_last_part_is_refused(harness: Harness) -> None:
    """Even a record whose last salt matches is bound to the stored size: an object with parts
    appended after the recorded ones does not take its facts."""
    writer, other = harness.proxy(), harness.proxy()
    upload(writer, "m", [os.urandom(n) for n in PARTS])
    kept = harness.store.get("b", "m")
    offsets, _ = _offsets(PARTS, 3)
    first_part = kept.data[: offsets[1]]
    kept.data = first_part + kept.data  # one part more in front: the last part is the same
    with harness.book.anything(), pytest.raises(ClientError) as err:
        _head(other, "m")
    assert status(err) == 500


def test_a_lookup_that_knows_the_stored_etag_sends_both_requests_at_once(
    harness: Harness,
) -> None:
    """A listing knows a multipart object by its stored ETag (``…-N``): the end and the tag
    go out together (one round trip); a single-stream object's look-up is its end alone."""
    writer, other = harness.proxy(), harness.proxy()
    parts = [os.urandom(n) for n in PARTS]
    upload(writer, "m", parts)
    with harness.book.anything():
        writer.client.put_object(Bucket="b", Key="single", Body=b"x" * 1000)
    ends = EndReader(other.objects)
    stored = harness.store.get("b", "m").etag
    with harness.book.expect(Unordered(TAIL("/b/m"), GET("/b/m?tagging"))):
        info = harness.run(ends.looked_up(Target("b", "m", ()), [], stored))
    assert info is not None and info.etag == multipart_etag(parts) and info.size == sum(PARTS)
    single = harness.store.get("b", "single").etag
    with harness.book.expect(TAIL("/b/single")):
        found = harness.run(ends.looked_up(Target("b", "single", ()), [], single))
    assert found is not None and found.size == 1000
