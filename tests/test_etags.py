"""ETags as S3 gives them for the plaintext, the same in every response that shows one (issue 8).
Real boto3 through the proxy, moto behind it: its listings (ListObjects, versions), repeated
completions and versioned GetObjectAttributes. Headers that carry an ETag (conditions), the
checksums of multipart objects, v1 objects and GetObjectAttributes are tested in process
(tests/test_inproc_reads.py, tests/test_inproc_writes.py)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

MiB = 1024 * 1024


def _md5(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def _multipart_etag(parts: list[bytes]) -> str:
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


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
