"""ETags as S3 gives them for the plaintext, the same in every response that shows one, and
every header that carries an ETag taking the client's ETag (issue 8). Real boto3 through the
proxy, moto behind it."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3proxy.core.checksums import new_hasher
from s3proxy.core.format import seal
from s3proxy.devstack import Vault
from tests.conftest import ProxyProcess, upload_multipart

MiB = 1024 * 1024


def _md5(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def _multipart_etag(parts: list[bytes]) -> str:
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


def _status(err: pytest.ExceptionInfo[ClientError]) -> int:
    return int(err.value.response["ResponseMetadata"]["HTTPStatusCode"])


def _everywhere(client: Any, bucket: str, key: str, expected: str) -> None:
    """The ETag every read and listing response reports for ``key``."""
    assert client.head_object(Bucket=bucket, Key=key)["ETag"] == expected
    assert client.get_object(Bucket=bucket, Key=key)["ETag"] == expected
    assert client.get_object(Bucket=bucket, Key=key, Range="bytes=1-5")["ETag"] == expected
    assert client.get_object(Bucket=bucket, Key=key, PartNumber=1)["ETag"] == expected
    assert client.head_object(Bucket=bucket, Key=key, PartNumber=1)["ETag"] == expected
    listed = {o["Key"]: o["ETag"] for o in client.list_objects(Bucket=bucket)["Contents"]}
    assert listed[key] == expected
    listed = {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed[key] == expected
    versions = client.list_object_versions(Bucket=bucket)["Versions"]
    assert {v["Key"]: v["ETag"] for v in versions}[key] == expected


def test_put_object_etag_is_the_plaintext_md5_everywhere(
    client: Any, raw: Any, bucket: str
) -> None:
    data = os.urandom(200_000)
    put = client.put_object(Bucket=bucket, Key="one", Body=data)
    assert put["ETag"] == _md5(data)
    assert raw.head_object(Bucket=bucket, Key="one")["ETag"] != _md5(data)  # stored: ciphertext
    _everywhere(client, bucket, "one", _md5(data))
    empty = client.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert empty["ETag"] == _md5(b"") == client.head_object(Bucket=bucket, Key="empty")["ETag"]


def test_multipart_etags_are_s3s_for_the_plaintext_everywhere(client: Any, bucket: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1234)]
    uid = client.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etags = []
    for number, part in enumerate(parts, start=1):
        resp = client.upload_part(
            Bucket=bucket, Key="mp", UploadId=uid, PartNumber=number, Body=part
        )
        assert resp["ETag"] == _md5(part)
        etags.append(resp["ETag"])
    done = client.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]},
    )
    assert done["ETag"] == _multipart_etag(parts)
    _everywhere(client, bucket, "mp", _multipart_etag(parts))
    assert client.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"".join(parts)
    # A Complete sent again (a client retrying) is answered as before, as S3 and moto do.
    client.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]},
    )
    assert client.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"".join(parts)


def test_a_part_resent_with_the_same_bytes_completes_with_the_first_etag(
    client: Any, bucket: str
) -> None:
    part = os.urandom(5 * MiB)
    last = os.urandom(100)
    uid = client.create_multipart_upload(Bucket=bucket, Key="again")["UploadId"]
    first = client.upload_part(Bucket=bucket, Key="again", UploadId=uid, PartNumber=1, Body=part)
    second = client.upload_part(Bucket=bucket, Key="again", UploadId=uid, PartNumber=1, Body=part)
    assert first["ETag"] == second["ETag"] == _md5(part)  # equal bytes, equal ETags, as on S3
    tail = client.upload_part(Bucket=bucket, Key="again", UploadId=uid, PartNumber=2, Body=last)
    done = client.complete_multipart_upload(
        Bucket=bucket,
        Key="again",
        UploadId=uid,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": first["ETag"]},
                {"PartNumber": 2, "ETag": tail["ETag"]},
            ]
        },
    )
    assert done["ETag"] == _multipart_etag([part, last])
    assert client.get_object(Bucket=bucket, Key="again")["Body"].read() == part + last


def test_list_parts_reports_plaintext_sizes_and_complete_takes_its_etags(
    client: Any, bucket: str
) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(77)]
    uid = client.create_multipart_upload(Bucket=bucket, Key="lp")["UploadId"]
    for number, part in enumerate(parts, start=1):
        client.upload_part(Bucket=bucket, Key="lp", UploadId=uid, PartNumber=number, Body=part)
    listed = client.list_parts(Bucket=bucket, Key="lp", UploadId=uid)["Parts"]
    assert [p["Size"] for p in listed] == [len(p) for p in parts]
    # A client that completes with the ETags ListParts gave it (the stored parts') works too.
    done = client.complete_multipart_upload(
        Bucket=bucket,
        Key="lp",
        UploadId=uid,
        MultipartUpload={
            "Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in listed]
        },
    )
    assert done["ETag"] == _multipart_etag(parts)


def test_conditional_reads_take_the_clients_etag(client: Any, bucket: str) -> None:
    data = os.urandom(70_000)
    etag = client.put_object(Bucket=bucket, Key="c", Body=data)["ETag"]
    other = _md5(b"something else")
    assert client.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == data
    assert client.head_object(Bucket=bucket, Key="c", IfMatch=etag.strip('"'))["ETag"] == etag
    got = client.get_object(Bucket=bucket, Key="c", IfNoneMatch=other, Range="bytes=10-19")
    assert got["Body"].read() == data[10:20]
    for call in (client.get_object, client.head_object):
        with pytest.raises(ClientError) as err:
            call(Bucket=bucket, Key="c", IfMatch=other)
        assert _status(err) == 412
        with pytest.raises(ClientError) as err:
            call(Bucket=bucket, Key="c", IfNoneMatch=etag)
        assert _status(err) == 304
    # S3's precedence: If-Match true wins over If-Unmodified-Since false, If-None-Match false
    # (a match) over If-Modified-Since true.
    long_ago = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    assert client.head_object(Bucket=bucket, Key="c", IfMatch=etag, IfUnmodifiedSince=long_ago)
    with pytest.raises(ClientError) as err:
        client.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=long_ago)
    assert _status(err) == 412
    with pytest.raises(ClientError) as err:
        client.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag, IfModifiedSince=long_ago)
    assert _status(err) == 304
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with pytest.raises(ClientError) as err:
        client.get_object(Bucket=bucket, Key="c", IfModifiedSince=future)
    assert _status(err) == 304


def test_conditional_writes_and_copies_take_the_clients_etag(client: Any, bucket: str) -> None:
    etag = client.put_object(Bucket=bucket, Key="w", Body=b"version one")["ETag"]
    with pytest.raises(ClientError) as err:
        client.put_object(Bucket=bucket, Key="w", Body=b"lost", IfMatch=_md5(b"nope"))
    assert _status(err) == 412
    put = client.put_object(Bucket=bucket, Key="w", Body=b"version two", IfMatch=etag)
    assert put["ETag"] == _md5(b"version two")
    with pytest.raises(ClientError) as err:
        client.put_object(Bucket=bucket, Key="w", Body=b"x", IfNoneMatch="*")
    assert _status(err) == 412
    source = {"Bucket": bucket, "Key": "w"}
    copied = client.copy_object(
        Bucket=bucket, Key="w2", CopySource=source, CopySourceIfMatch=put["ETag"]
    )
    assert copied["CopyObjectResult"]["ETag"] == put["ETag"]
    assert client.head_object(Bucket=bucket, Key="w2")["ETag"] == put["ETag"]
    with pytest.raises(ClientError) as err:
        client.copy_object(Bucket=bucket, Key="w3", CopySource=source, CopySourceIfMatch=etag)
    assert _status(err) == 412
    with pytest.raises(ClientError) as err:
        client.copy_object(
            Bucket=bucket, Key="w3", CopySource=source, CopySourceIfNoneMatch=put["ETag"]
        )
    assert _status(err) == 412
    replaced = client.copy_object(
        Bucket=bucket, Key="w4", CopySource=source, Metadata={"a": "b"}, MetadataDirective="REPLACE"
    )
    assert replaced["CopyObjectResult"]["ETag"] == put["ETag"]
    assert client.get_object(Bucket=bucket, Key="w4")["Body"].read() == b"version two"


def test_objects_written_in_format_v1_keep_reading_with_their_old_etags(
    proxy: ProxyProcess, vault: Vault, raw: Any, client: Any, bucket: str
) -> None:
    """An object as the previous release stored it (v1 stream, v1 marker, the checksum in
    metadata) reads byte-exact, with the ETag it had: the stored one."""
    status, body = vault.api("POST", f"transit/datakey/plaintext/{vault.transit_key}", {})
    assert status == 200
    key = base64.b64decode(body["data"]["plaintext"])
    data = os.urandom(150_000)
    stream = seal(key, body["data"]["ciphertext"], data, 65536, version=1)
    crc = base64.b64encode(__import__("zlib").crc32(data).to_bytes(4, "big")).decode()
    stored = raw.put_object(
        Bucket=bucket,
        Key="old",
        Body=stream,
        Metadata={"s3proxy-encryption": "v=1;seg=65536", "s3proxy-checksum": f"crc32:{crc}"},
    )
    old_etag = stored["ETag"]
    got = client.get_object(Bucket=bucket, Key="old", ChecksumMode="ENABLED")
    assert got["Body"].read() == data and got["ETag"] == old_etag
    assert got["ContentLength"] == len(data) and got["ChecksumCRC32"] == crc
    assert client.head_object(Bucket=bucket, Key="old")["ETag"] == old_etag
    ranged = client.get_object(Bucket=bucket, Key="old", Range="bytes=70000-70009")
    assert ranged["Body"].read() == data[70000:70010]
    listed = client.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Size"], o["ETag"]) for o in listed] == [(len(data), old_etag)]
    assert client.get_object(Bucket=bucket, Key="old", IfMatch=old_etag)["ETag"] == old_etag


def test_get_object_attributes_reports_the_plaintext(client: Any, bucket: str) -> None:
    everything = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
    data = b"A" * 1024
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    put = client.put_object(
        Bucket=bucket, Key="s", Body=data, ChecksumAlgorithm="SHA256", ChecksumSHA256=sha
    )
    got = client.get_object_attributes(Bucket=bucket, Key="s", ObjectAttributes=everything)
    assert got["ETag"] == put["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    assert got["ObjectSize"] == 1024 and got["StorageClass"] == "STANDARD"
    assert got["Checksum"]["ChecksumSHA256"] == sha
    assert "ObjectParts" not in got
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(10)]
    upload_multipart(client, bucket, "m", parts)
    got = client.get_object_attributes(
        Bucket=bucket, Key="m", ObjectAttributes=everything, MaxParts=2
    )
    assert got["ETag"] == _multipart_etag(parts).strip('"')
    assert got["ObjectSize"] == sum(len(p) for p in parts)
    assert got["ObjectParts"]["TotalPartsCount"] == 3
    assert got["ObjectParts"]["IsTruncated"] is True
    assert [p["Size"] for p in got["ObjectParts"]["Parts"]] == [5 * MiB, 5 * MiB]
    rest = client.get_object_attributes(
        Bucket=bucket, Key="m", ObjectAttributes=["ObjectParts"], PartNumberMarker=2
    )
    assert [(p["PartNumber"], p["Size"]) for p in rest["ObjectParts"]["Parts"]] == [(3, 10)]
    assert "ETag" not in rest and "ObjectSize" not in rest


def test_get_object_attributes_of_an_older_version(client: Any, raw: Any, bucket: str) -> None:
    raw.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = client.put_object(Bucket=bucket, Key="v", Body=b"foo")
    client.put_object(Bucket=bucket, Key="v", Body=b"longer body")
    got = client.get_object_attributes(
        Bucket=bucket,
        Key="v",
        VersionId=first["VersionId"],
        ObjectAttributes=["ETag", "ObjectSize"],
    )
    assert got["VersionId"] == first["VersionId"]
    assert (got["ETag"], got["ObjectSize"]) == (hashlib.md5(b"foo").hexdigest(), 3)


def test_multipart_checksums_are_s3s_for_the_plaintext(client: Any, bucket: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(4321)]
    data = b"".join(parts)

    def crc(algorithm: str, body: bytes) -> bytes:
        hasher = new_hasher(algorithm)
        hasher.update(body)
        return hasher.digest()

    # COMPOSITE (what s3transfer asks for with CRC32): the CRC32 of the parts' CRC32s, -N.
    uid = client.create_multipart_upload(Bucket=bucket, Key="comp", ChecksumAlgorithm="CRC32")
    assert (uid["ChecksumAlgorithm"], uid["ChecksumType"]) == ("CRC32", "COMPOSITE")
    done_parts = []
    for number, part in enumerate(parts, start=1):
        resp = client.upload_part(
            Bucket=bucket, Key="comp", UploadId=uid["UploadId"], PartNumber=number,
            Body=part, ChecksumAlgorithm="CRC32",
        )  # fmt: skip
        assert resp["ChecksumCRC32"] == base64.b64encode(crc("crc32", part)).decode()
        done_parts.append(
            {"PartNumber": number, "ETag": resp["ETag"], "ChecksumCRC32": resp["ChecksumCRC32"]}
        )
    done = client.complete_multipart_upload(
        Bucket=bucket, Key="comp", UploadId=uid["UploadId"],
        MultipartUpload={"Parts": done_parts},
    )  # fmt: skip
    composite = crc("crc32", b"".join(crc("crc32", p) for p in parts))
    expected = f"{base64.b64encode(composite).decode()}-3"
    assert (done["ChecksumCRC32"], done["ChecksumType"]) == (expected, "COMPOSITE")
    head = client.head_object(Bucket=bucket, Key="comp", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (expected, "COMPOSITE")
    part = client.get_object(Bucket=bucket, Key="comp", PartNumber=2, ChecksumMode="ENABLED")
    assert part["ChecksumCRC32"] == base64.b64encode(crc("crc32", parts[1])).decode()
    assert part["Body"].read() == parts[1]  # botocore validated the part's CRC32
    # FULL_OBJECT (CRC64NVME): the CRC of the whole plaintext, which botocore validates on GET.
    uid = client.create_multipart_upload(
        Bucket=bucket, Key="full", ChecksumAlgorithm="CRC64NVME", ChecksumType="FULL_OBJECT"
    )
    assert uid["ChecksumType"] == "FULL_OBJECT"
    done_parts = []
    for number, part in enumerate(parts, start=1):
        resp = client.upload_part(
            Bucket=bucket, Key="full", UploadId=uid["UploadId"], PartNumber=number,
            Body=part, ChecksumAlgorithm="CRC64NVME",
        )  # fmt: skip
        done_parts.append({"PartNumber": number, "ETag": resp["ETag"]})
    done = client.complete_multipart_upload(
        Bucket=bucket, Key="full", UploadId=uid["UploadId"],
        MultipartUpload={"Parts": done_parts},
    )  # fmt: skip
    whole = base64.b64encode(crc("crc64nvme", data)).decode()
    assert (done["ChecksumCRC64NVME"], done["ChecksumType"]) == (whole, "FULL_OBJECT")
    got = client.get_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    assert got["ChecksumCRC64NVME"] == whole
    assert got["Body"].read() == data  # botocore compared the CRC64NVME of what it received
    attributes = client.get_object_attributes(
        Bucket=bucket, Key="full", ObjectAttributes=["Checksum"]
    )
    assert attributes["Checksum"]["ChecksumCRC64NVME"] == whole
