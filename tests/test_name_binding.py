"""S3PROXY_BIND_OBJECT_NAMES: streams bound to their bucket and key. Ciphertext the store moves
or copies under another name fails to read; copies made through the proxy are re-encrypted and
read back like S3's, with metadata, tags and ETags as S3 gives them."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from boto3.s3.transfer import TransferConfig

from s3proxy.devstack import S3Server, Vault
from tests.conftest import ProxyProcess, aws_cli, cli_env, start_proxy, upload_multipart


@pytest.fixture(scope="module")
def bound(workdir: Path, vault: Vault, s3: S3Server) -> Iterator[ProxyProcess]:
    proxy = start_proxy(workdir, vault, s3, {"S3PROXY_BIND_OBJECT_NAMES": "true"})
    yield proxy
    proxy.stop()


def _fails_to_read(client: Any, bucket: str, key: str) -> None:
    with pytest.raises(
        (botocore.exceptions.ClientError, botocore.exceptions.ResponseStreamingError)
    ) as failed:
        client.get_object(Bucket=bucket, Key=key)["Body"].read()
    if isinstance(failed.value, botocore.exceptions.ClientError):
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_ciphertext_moved_by_the_store_fails_to_read(
    bound: ProxyProcess, proxy: ProxyProcess, raw: Any, bucket: str
) -> None:
    client = bound.client()
    client.put_object(Bucket=bucket, Key="salary/alice", Body=b"alice: 100")
    upload_multipart(client, bucket, "backup/full", [b"p" * (5 * 1024 * 1024), b"end"])
    assert client.get_object(Bucket=bucket, Key="salary/alice")["Body"].read() == b"alice: 100"
    # the provider puts Alice's ciphertext (and metadata) under Bob's name, and copies a backup
    raw.copy_object(
        Bucket=bucket, Key="salary/bob", CopySource={"Bucket": bucket, "Key": "salary/alice"}
    )
    raw.copy_object(
        Bucket=bucket, Key="backup/other", CopySource={"Bucket": bucket, "Key": "backup/full"}
    )
    for reader in (client, proxy.client()):  # any proxy checks a binding, bound writes or not
        _fails_to_read(reader, bucket, "salary/bob")
        _fails_to_read(reader, bucket, "backup/other")
        assert reader.get_object(Bucket=bucket, Key="backup/full")["Body"].read()[-3:] == b"end"
    log = bound.log_text()
    assert "salary/bob" in log and "integrity" in log


def test_copies_through_the_proxy_are_reencrypted_and_read_back(
    bound: ProxyProcess, proxy: ProxyProcess, raw: Any, bucket: str
) -> None:
    client = bound.client()
    data = bytes(range(256)) * 5000
    client.put_object(
        Bucket=bucket,
        Key="src",
        Body=data,
        Metadata={"owner": "alice"},
        ContentType="text/plain",
        Tagging="team=blue",
        ChecksumAlgorithm="SHA256",
    )
    copied = client.copy_object(
        Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"}
    )
    assert copied["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = client.get_object(Bucket=bucket, Key="dst", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"owner": "alice"} and got["ContentType"] == "text/plain"
    assert got["ETag"] == copied["CopyObjectResult"]["ETag"]
    assert client.get_object_tagging(Bucket=bucket, Key="dst")["TagSet"] == [
        {"Key": "team", "Value": "blue"}
    ]
    replaced = client.copy_object(
        Bucket=bucket,
        Key="dst2",
        CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        Metadata={"owner": "bob"},
        TaggingDirective="REPLACE",
        Tagging="team=red",
    )
    assert replaced["CopyObjectResult"]["ETag"] == copied["CopyObjectResult"]["ETag"]
    head = client.head_object(Bucket=bucket, Key="dst2")
    assert head["Metadata"] == {"owner": "bob"} and head["ContentLength"] == len(data)
    assert client.get_object_tagging(Bucket=bucket, Key="dst2")["TagSet"] == [
        {"Key": "team", "Value": "red"}
    ]
    # the copies are the proxy's own, bound to their new names: a second proxy reads them
    assert proxy.client().get_object(Bucket=bucket, Key="dst2")["Body"].read() == data
    assert raw.get_object(Bucket=bucket, Key="dst")["Body"].read() != data
    with pytest.raises(botocore.exceptions.ClientError) as stale:
        client.copy_object(
            Bucket=bucket,
            Key="dst3",
            CopySource={"Bucket": bucket, "Key": "src"},
            CopySourceIfModifiedSince=head["LastModified"].replace(year=2100),
        )
    assert stale.value.response["Error"]["Code"] == "PreconditionFailed"


def test_multipart_copies_and_the_aws_cli_work_when_bound(
    bound: ProxyProcess, bucket: str, tmp_path: Path
) -> None:
    client = bound.client()
    data = bytes(i % 249 for i in range(12 * 1024 * 1024 + 7))
    small = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    client.upload_fileobj(__import__("io").BytesIO(data), bucket, "big", Config=small)
    # boto3's managed copy: UploadPartCopy of each range, re-encrypted under the new name
    client.copy({"Bucket": bucket, "Key": "big"}, bucket, "big-copy", Config=small)
    assert client.get_object(Bucket=bucket, Key="big-copy")["Body"].read() == data
    env = cli_env(bound)
    subprocess.run(
        [aws_cli(), "s3", "cp", f"s3://{bucket}/big", f"s3://{bucket}/cli-copy"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert client.get_object(Bucket=bucket, Key="cli-copy")["Body"].read() == data
    subprocess.run(
        [aws_cli(), "s3", "mv", f"s3://{bucket}/cli-copy", f"s3://{bucket}/moved"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert client.get_object(Bucket=bucket, Key="moved")["Body"].read() == data


def test_copies_of_bound_objects_reencrypt_even_when_binding_is_off(
    bound: ProxyProcess, proxy: ProxyProcess, bucket: str
) -> None:
    bound.client().put_object(Bucket=bucket, Key="bound", Body=b"bound data")
    plain = proxy.client()  # S3PROXY_BIND_OBJECT_NAMES off
    plain.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "bound"})
    assert plain.get_object(Bucket=bucket, Key="copy")["Body"].read() == b"bound data"
    assert boto3  # (imported for the type of clients above)
