"""Reads through the proxy as S3 answers them (sizes, ranges, conditions, checksums, ETags, the
stored ciphertext, objects the proxy did not write), in process against the playbook's fake
upstream (tests/inproc.py): the proxy's own logic, with real boto3 as the client. What only real
peers show (SigV4, real clients, the stores' quirks) stays in tests/test_proxy.py and the other
end-to-end tests."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import os
import zlib

import pytest
from botocore.exceptions import ClientError

from s3proxy.core.format import parse_header, seal
from s3proxy.core.sizes import DEFAULT_SEGMENT_SIZE, ciphertext_length
from tests.inproc import Harness, InProcProxy
from tests.playbook import GET, PUT

S = DEFAULT_SEGMENT_SIZE
SIZES = [0, 1, S - 1, S, S + 1, 3 * S + 5, 10 * 1024 * 1024 + 3]


def md5(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def status(err: pytest.ExceptionInfo[ClientError]) -> int:
    return int(err.value.response["ResponseMetadata"]["HTTPStatusCode"])


def _pattern(n: int) -> bytes:
    """Compressible, repetitive plaintext: the kind a weak cipher mode would leak."""
    line = b"customer=4711;iban=DE00123456780000;amount=100.00;\n"
    return (line * (n // len(line) + 1))[:n]


@pytest.fixture
def proxy(harness: Harness) -> InProcProxy:
    return harness.proxy()


@pytest.mark.parametrize("size", SIZES)
def test_round_trips_byte_exact(harness: Harness, proxy: InProcProxy, size: int) -> None:
    data = os.urandom(size)
    client = proxy.client
    with harness.book.expect(PUT("/b/obj"), GET("/b/obj"), GET("/b/obj", Range="bytes=-160")):
        client.put_object(Bucket="b", Key="obj", Body=data)
        got = client.get_object(Bucket="b", Key="obj")
        assert got["ContentLength"] == size
        assert got["Body"].read() == data
        assert client.head_object(Bucket="b", Key="obj")["ContentLength"] == size
    assert len(harness.store.get("b", "obj").data) == ciphertext_length(size, S, 3)
    with harness.book.anything():  # a process that has not seen it
        other = harness.proxy().client
        assert other.get_object(Bucket="b", Key="obj")["Body"].read() == data
        assert other.head_object(Bucket="b", Key="obj")["ContentLength"] == size


def test_stored_object_is_ciphertext(harness: Harness, proxy: InProcProxy) -> None:
    data = _pattern(3 * S + 5)
    with harness.book.anything():
        proxy.client.put_object(Bucket="b", Key="secret.txt", Body=data, Metadata={"owner": "a"})
    stored = harness.store.get("b", "secret.txt")
    blob = stored.data
    assert blob != data and len(blob) == ciphertext_length(len(data), S, 3)
    windows = {blob[i : i + 16] for i in range(len(blob) - 15)}
    assert not any(data[i : i + 16] in windows for i in range(len(data) - 15))
    header = parse_header(blob)
    assert header.wrapped_key.startswith("vault:v1:") and header.plaintext_length == len(data)
    # The user's metadata is kept; the proxy's marker is there upstream but hidden from clients.
    assert stored.metadata("owner") == "a" and stored.metadata("s3proxy-encryption")
    with harness.book.anything():
        assert proxy.client.head_object(Bucket="b", Key="secret.txt")["Metadata"] == {"owner": "a"}


def test_ranges(harness: Harness, proxy: InProcProxy) -> None:
    data = os.urandom(5 * S + 17)
    n = len(data)
    with harness.book.anything():
        proxy.client.put_object(Bucket="b", Key="r", Body=data)
        for spec, first, last in [
            ("bytes=0-0", 0, 0),
            (f"bytes={S - 1}-{S}", S - 1, S),
            (f"bytes={S + 3}-{4 * S}", S + 3, 4 * S),
            (f"bytes={n - 5}-", n - 5, n - 1),
            ("bytes=-17", n - 17, n - 1),
            (f"bytes=10-{n + 100}", 10, n - 1),
        ]:
            got = proxy.client.get_object(Bucket="b", Key="r", Range=spec)
            assert got["ContentRange"] == f"bytes {first}-{last}/{n}"
            assert got["Body"].read() == data[first : last + 1]
        with pytest.raises(ClientError) as err:
            proxy.client.get_object(Bucket="b", Key="r", Range=f"bytes={n}-")
        assert err.value.response["Error"]["Code"] == "InvalidRange"


def test_conditional_requests_behave_as_on_s3(harness: Harness, proxy: InProcProxy) -> None:
    client = proxy.client
    with harness.book.anything():
        client.put_object(Bucket="b", Key="c", Body=b"0123456789" * 10_000)
        head = client.head_object(Bucket="b", Key="c")
        etag, modified = head["ETag"], head["LastModified"]
        assert client.get_object(Bucket="b", Key="c", IfMatch=etag)["ContentLength"] == 100_000
        ranged = client.get_object(Bucket="b", Key="c", IfMatch=etag, Range="bytes=5-14")
        assert ranged["Body"].read() == b"5678901234"
        for kwargs, code in [
            ({"IfMatch": '"0000"'}, 412),
            ({"IfMatch": '"0000"', "Range": "bytes=0-1"}, 412),
            ({"IfNoneMatch": etag}, 304),
            ({"IfNoneMatch": etag, "Range": "bytes=0-1"}, 304),
            ({"IfModifiedSince": modified}, 304),
            ({"IfUnmodifiedSince": modified.replace(year=2000)}, 412),
        ]:
            with pytest.raises(ClientError) as err:
                client.get_object(Bucket="b", Key="c", **kwargs)
            assert status(err) == code, kwargs
            with pytest.raises(ClientError) as err:
                client.head_object(
                    Bucket="b", Key="c", **{k: v for k, v in kwargs.items() if k != "Range"}
                )
            assert status(err) == code, kwargs


def test_conditional_reads_take_the_clients_etag(harness: Harness, proxy: InProcProxy) -> None:
    """(From tests/test_etags.py.) S3's precedence: If-Match true wins over If-Unmodified-Since
    false, If-None-Match false (a match) over If-Modified-Since true."""
    client = proxy.client
    data = os.urandom(70_000)
    other = md5(b"something else")
    with harness.book.anything():
        etag = client.put_object(Bucket="b", Key="c", Body=data)["ETag"]
        assert client.get_object(Bucket="b", Key="c", IfMatch=etag)["Body"].read() == data
        assert client.head_object(Bucket="b", Key="c", IfMatch=etag.strip('"'))["ETag"] == etag
        got = client.get_object(Bucket="b", Key="c", IfNoneMatch=other, Range="bytes=10-19")
        assert got["Body"].read() == data[10:20]
        for call in (client.get_object, client.head_object):
            with pytest.raises(ClientError) as err:
                call(Bucket="b", Key="c", IfMatch=other)
            assert status(err) == 412
            with pytest.raises(ClientError) as err:
                call(Bucket="b", Key="c", IfNoneMatch=etag)
            assert status(err) == 304
        long_ago = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        assert client.head_object(Bucket="b", Key="c", IfMatch=etag, IfUnmodifiedSince=long_ago)
        with pytest.raises(ClientError) as err:
            client.get_object(Bucket="b", Key="c", IfUnmodifiedSince=long_ago)
        assert status(err) == 412
        with pytest.raises(ClientError) as err:
            client.get_object(Bucket="b", Key="c", IfNoneMatch=etag, IfModifiedSince=long_ago)
        assert status(err) == 304
        future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        with pytest.raises(ClientError) as err:
            client.get_object(Bucket="b", Key="c", IfModifiedSince=future)
        assert status(err) == 304


def test_plaintext_checksum_is_kept_and_validated_by_the_sdk(
    harness: Harness, proxy: InProcProxy
) -> None:
    client = proxy.client
    data = os.urandom(2 * S + 9)
    with harness.book.anything():
        put = client.put_object(Bucket="b", Key="ck", Body=data)  # boto3 sends CRC32
        got = client.get_object(Bucket="b", Key="ck", ChecksumMode="ENABLED")
        assert got["ChecksumCRC32"] == put["ChecksumCRC32"]
        assert got["Body"].read() == data  # botocore validated the CRC32 of the decrypted body
        head = client.head_object(Bucket="b", Key="ck", ChecksumMode="ENABLED")
        assert head["ChecksumCRC32"] == put["ChecksumCRC32"]
        sha = client.put_object(Bucket="b", Key="sha", Body=data, ChecksumAlgorithm="SHA256")
        got = client.get_object(Bucket="b", Key="sha", ChecksumMode="ENABLED")
        assert got["ChecksumSHA256"] == sha["ChecksumSHA256"] and got["Body"].read() == data
    # The checksum is kept in the stream's sealed trailer: metadata cannot change it, and a
    # changed trailer fails authentication instead of reporting another checksum.
    stored = harness.store.get("b", "ck")
    stored.headers = [
        (k, "crc32:AAAAAA==" if k == "x-amz-meta-s3proxy-checksum" else v)
        for k, v in stored.headers
    ] + [("x-amz-meta-s3proxy-checksum", "crc32:AAAAAA==")]
    fresh = harness.proxy().client
    with harness.book.anything():
        head = fresh.head_object(Bucket="b", Key="ck", ChecksumMode="ENABLED")
        assert head["ChecksumCRC32"] == put["ChecksumCRC32"]
    flipped = bytearray(stored.data)
    flipped[-40] ^= 1  # inside the trailer
    meta = stored.headers
    harness.store.put("b", "ck", bytes(flipped)).headers = meta
    with harness.book.anything(), pytest.raises(ClientError) as err:
        harness.proxy().client.head_object(Bucket="b", Key="ck", ChecksumMode="ENABLED")
    assert status(err) == 500


def test_objects_written_in_format_v1_keep_reading_with_their_old_etags(
    harness: Harness, proxy: InProcProxy
) -> None:
    """(From tests/test_etags.py.) An object as the previous release stored it (v1 stream, v1
    marker, the checksum in metadata) reads byte-exact, with the ETag it had: the stored one."""
    vault = harness.vault
    code, answer = vault.api("POST", f"transit/datakey/plaintext/{vault.transit_key}", {})
    assert code == 200
    key = base64.b64decode(answer["data"]["plaintext"])
    data = os.urandom(150_000)
    stream = seal(key, answer["data"]["ciphertext"], data, 65536, version=1)
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    old = harness.store.put(
        "b", "old", stream, s3proxy_encryption="v=1;seg=65536", s3proxy_checksum=f"crc32:{crc}"
    ).etag
    client = proxy.client
    with harness.book.anything():
        got = client.get_object(Bucket="b", Key="old", ChecksumMode="ENABLED")
        assert got["Body"].read() == data and got["ETag"] == old
        assert got["ContentLength"] == len(data) and got["ChecksumCRC32"] == crc
        assert client.head_object(Bucket="b", Key="old")["ETag"] == old
        ranged = client.get_object(Bucket="b", Key="old", Range="bytes=70000-70009")
        assert ranged["Body"].read() == data[70000:70010]
        listed = client.list_objects_v2(Bucket="b")["Contents"]
        assert [(o["Size"], o["ETag"]) for o in listed] == [(len(data), old)]
        assert client.get_object(Bucket="b", Key="old", IfMatch=old)["ETag"] == old


def test_objects_written_in_format_v2_keep_reading_with_their_plaintext_etags(
    harness: Harness, proxy: InProcProxy
) -> None:
    """An object as the previous release stored it (a v2 stream: the trailer, no footer; v2
    marker) reads byte-exact with its plaintext ETag and checksum; a cold HEAD costs its end
    (which holds the trailer) and its first bytes."""
    vault = harness.vault
    code, answer = vault.api("POST", f"transit/datakey/plaintext/{vault.transit_key}", {})
    assert code == 200
    key = base64.b64decode(answer["data"]["plaintext"])
    data = os.urandom(300_000)
    crc = zlib.crc32(data).to_bytes(4, "big")
    stream = seal(
        key, answer["data"]["ciphertext"], data, 65536, version=2, whole_object=True,
        checksum_algorithm="crc32", checksum=crc,
    )  # fmt: skip
    stored = harness.store.put("b", "old", stream, s3proxy_encryption="v=2;seg=65536").etag
    etag = f'"{hashlib.md5(data).hexdigest()}"'
    client = proxy.client
    with harness.book.expect(
        GET("/b/old", Range="bytes=-160"),
        GET("/b/old", Range="bytes=0-255", If_Match=stored),
    ):
        head = client.head_object(Bucket="b", Key="old", ChecksumMode="ENABLED")
    assert head["ETag"] == etag and head["ContentLength"] == len(data)
    assert head["ChecksumCRC32"] == base64.b64encode(crc).decode()
    with harness.book.anything():
        got = client.get_object(Bucket="b", Key="old")
        assert got["Body"].read() == data and got["ETag"] == etag
        ranged = client.get_object(Bucket="b", Key="old", Range="bytes=299990-")
        assert ranged["Body"].read() == data[299990:]
        fresh = harness.proxy().client
        listed = fresh.list_objects_v2(Bucket="b")["Contents"]
        assert [(o["Size"], o["ETag"]) for o in listed] == [(len(data), etag)]


def test_get_object_attributes_reports_the_plaintext(harness: Harness, proxy: InProcProxy) -> None:
    """(From tests/test_etags.py.)"""
    client = proxy.client
    everything = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
    data = b"A" * 1024
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    parts = [os.urandom(200_000), os.urandom(200_000), os.urandom(10)]
    with harness.book.anything():
        put = client.put_object(
            Bucket="b", Key="s", Body=data, ChecksumAlgorithm="SHA256", ChecksumSHA256=sha
        )
        got = client.get_object_attributes(Bucket="b", Key="s", ObjectAttributes=everything)
        assert got["ETag"] == put["ETag"].strip('"') == hashlib.md5(data).hexdigest()
        assert got["ObjectSize"] == 1024 and got["StorageClass"] == "STANDARD"
        assert got["Checksum"]["ChecksumSHA256"] == sha
        assert "ObjectParts" not in got
        uid = client.create_multipart_upload(Bucket="b", Key="m")["UploadId"]
        etags = [
            client.upload_part(Bucket="b", Key="m", UploadId=uid, PartNumber=i + 1, Body=p)["ETag"]
            for i, p in enumerate(parts)
        ]
        done = client.complete_multipart_upload(
            Bucket="b",
            Key="m",
            UploadId=uid,
            MultipartUpload={
                "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]
            },
        )
        got = client.get_object_attributes(
            Bucket="b", Key="m", ObjectAttributes=everything, MaxParts=2
        )
        assert got["ETag"] == done["ETag"].strip('"')
        assert got["ObjectSize"] == sum(len(p) for p in parts)
        assert got["ObjectParts"]["TotalPartsCount"] == 3
        assert got["ObjectParts"]["IsTruncated"] is True
        assert [p["Size"] for p in got["ObjectParts"]["Parts"]] == [200_000, 200_000]
        rest = client.get_object_attributes(
            Bucket="b", Key="m", ObjectAttributes=["ObjectParts"], PartNumberMarker=2
        )
        assert [(p["PartNumber"], p["Size"]) for p in rest["ObjectParts"]["Parts"]] == [(3, 10)]
        assert "ETag" not in rest and "ObjectSize" not in rest


def test_unsupported_operations_are_refused_with_501_before_anything_goes_upstream(
    harness: Harness, proxy: InProcProxy
) -> None:
    with harness.book.expect(), pytest.raises(ClientError) as err:
        proxy.client.select_object_content(
            Bucket="b",
            Key="o",
            Expression="select * from s3object",
            ExpressionType="SQL",
            InputSerialization={"CSV": {}},
            OutputSerialization={"CSV": {}},
        )
    assert err.value.response["Error"]["Code"] == "NotImplemented"
    assert "SelectObjectContent" in err.value.response["Error"]["Message"]


def test_unencrypted_objects_are_refused_by_default_and_allowed_narrowly(
    harness: Harness, proxy: InProcProxy
) -> None:
    """Plaintext in the bucket is what the provider could have put under any key: refused
    unless a migration allows it, and then only under the prefixes and before the time given."""
    harness.store.put("b", "legacy/old.txt", b"written before the proxy")
    harness.store.put("b", "other.txt", b"elsewhere")
    migrating = harness.proxy(
        S3PROXY_UNENCRYPTED_OBJECTS="allow",
        S3PROXY_UNENCRYPTED_PREFIXES="b/legacy/",
        S3PROXY_UNENCRYPTED_BEFORE="2999-01-01T00:00:00Z",
    )
    too_late = harness.proxy(
        S3PROXY_UNENCRYPTED_OBJECTS="allow", S3PROXY_UNENCRYPTED_BEFORE="2000-01-01"
    )
    with harness.book.anything():
        for call in (proxy.client.get_object, proxy.client.head_object):
            with pytest.raises(ClientError) as err:
                call(Bucket="b", Key="legacy/old.txt")
            assert status(err) == 403
        allowed = migrating.client
        got = allowed.get_object(Bucket="b", Key="legacy/old.txt")
        assert got["Body"].read() == b"written before the proxy"
        ranged = allowed.get_object(Bucket="b", Key="legacy/old.txt", Range="bytes=8-13")
        assert ranged["Body"].read() == b"before"
        with pytest.raises(ClientError) as err:
            allowed.get_object(Bucket="b", Key="other.txt")  # outside the prefixes
        assert err.value.response["Error"]["Code"] == "AccessDenied"
        with pytest.raises(ClientError) as err:  # modified after the migration's start
            too_late.client.get_object(Bucket="b", Key="legacy/old.txt")
        assert err.value.response["Error"]["Code"] == "AccessDenied"


def test_content_encoding_is_stored_not_interpreted(harness: Harness, proxy: InProcProxy) -> None:
    data = gzip.compress(b"compressed by the client " * 1000)
    with harness.book.anything():
        proxy.client.put_object(
            Bucket="b", Key="z.gz", Body=data, ContentEncoding="gzip", ContentType="text/plain"
        )
        got = proxy.client.get_object(Bucket="b", Key="z.gz")
        assert got["ContentEncoding"] == "gzip"
        assert got["Body"].read() == data
    assert ("content-encoding", "gzip") in harness.store.get("b", "z.gz").headers
