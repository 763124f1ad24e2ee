"""S3PROXY_BIND_OBJECT_NAMES: streams bound to their bucket and key. Ciphertext the store moves
or copies under another name fails to read; copies made through the proxy are re-encrypted and
read back like S3's, with metadata, tags and ETags as S3 gives them."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from boto3.s3.transfer import TransferConfig

from s3proxy.core.format import parse_header
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


def _refused_everywhere(client: Any, bucket: str, key: str) -> None:
    """Every read path of a bound-mode proxy refuses the object: GET whole and ranged, HEAD,
    ``?partNumber``, GetObjectAttributes, and a copy (which would re-encrypt it, bound)."""
    _fails_to_read(client, bucket, key)
    reads: list[Any] = [
        lambda: client.get_object(Bucket=bucket, Key=key, Range="bytes=0-3")["Body"].read(),
        lambda: client.get_object(Bucket=bucket, Key=key, Range="bytes=-2")["Body"].read(),
        lambda: client.get_object(Bucket=bucket, Key=key, PartNumber=1)["Body"].read(),
        lambda: client.head_object(Bucket=bucket, Key=key),
        lambda: client.head_object(Bucket=bucket, Key=key, PartNumber=1),
        lambda: client.get_object_attributes(
            Bucket=bucket, Key=key, ObjectAttributes=["ETag", "ObjectSize"]
        ),
        lambda: client.copy_object(
            Bucket=bucket, Key=f"{key}.copy", CopySource={"Bucket": bucket, "Key": key}
        ),
    ]
    for read in reads:
        with pytest.raises(botocore.exceptions.ClientError) as failed:
            read()
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    with pytest.raises(botocore.exceptions.ClientError):
        client.head_object(Bucket=bucket, Key=f"{key}.copy")  # nothing was written
    upload = client.create_multipart_upload(Bucket=bucket, Key=f"{key}.parts")["UploadId"]
    with pytest.raises(botocore.exceptions.ClientError) as failed:
        client.upload_part_copy(
            Bucket=bucket,
            Key=f"{key}.parts",
            UploadId=upload,
            PartNumber=1,
            CopySource={"Bucket": bucket, "Key": key},
        )
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    client.abort_multipart_upload(Bucket=bucket, Key=f"{key}.parts", UploadId=upload)


def test_unbound_ciphertext_moved_under_a_bound_key_is_refused(
    bound: ProxyProcess, proxy: ProxyProcess, raw: Any, bucket: str
) -> None:
    """Issue 18: a bound object replaced by any unbound ciphertext under the same transit key
    (another bucket's object, or one written before binding was on) must not read as it."""
    client = bound.client()
    client.put_object(Bucket=bucket, Key="salary/alice", Body=b"alice: 100")
    upload_multipart(client, bucket, "salary/all", [b"a" * (5 * 1024 * 1024), b"bound end"])
    # the bound proxy now holds both layouts (its fast paths read without a probe)
    assert client.get_object(Bucket=bucket, Key="salary/alice", Range="bytes=0-4")[
        "Body"
    ].read() == (b"alice")
    assert client.get_object(Bucket=bucket, Key="salary/all")["Body"].read()[-9:] == b"bound end"
    plain = proxy.client()  # binding off: unbound streams, under the same transit key
    plain.put_object(Bucket=bucket, Key="old/alice", Body=b"alice: 1")
    upload_multipart(plain, bucket, "old/all", [b"o" * (5 * 1024 * 1024), b"old end"])
    for source, key in (("old/alice", "salary/alice"), ("old/all", "salary/all")):
        raw.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": source})
        tags = raw.get_object_tagging(Bucket=bucket, Key=source)["TagSet"]
        if tags:  # the manifest too, if the store's copy left it behind
            raw.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": tags})
    for key in ("salary/alice", "salary/all", "old/alice", "old/all"):
        _refused_everywhere(client, bucket, key)
    # the objects themselves are sound: a proxy that does not bind reads them
    assert plain.get_object(Bucket=bucket, Key="salary/alice")["Body"].read() == b"alice: 1"
    assert plain.get_object(Bucket=bucket, Key="salary/all")["Body"].read()[-7:] == b"old end"
    assert "not bound to its name" in bound.log_text()


def test_unbound_objects_read_within_the_migration_allowance(
    workdir: Path, vault: Vault, s3: S3Server, proxy: ProxyProcess, raw: Any, bucket: str
) -> None:
    """S3PROXY_UNBOUND_OBJECTS=allow, narrowed like S3PROXY_UNENCRYPTED_*: only under the
    listed prefixes, only objects last modified before the time binding was turned on."""
    plain = proxy.client()
    plain.put_object(Bucket=bucket, Key="legacy/a", Body=b"written before binding")
    upload_multipart(plain, bucket, "legacy/m", [b"l" * (5 * 1024 * 1024), b"legacy end"])
    plain.put_object(Bucket=bucket, Key="other/b", Body=b"outside the prefixes")
    time.sleep(1.5)  # Last-Modified has whole seconds
    turned_on = dt.datetime.now(dt.UTC)
    time.sleep(1.5)
    plain.put_object(Bucket=bucket, Key="legacy/late", Body=b"written after binding")
    migrating = start_proxy(
        workdir,
        vault,
        s3,
        {
            "S3PROXY_BIND_OBJECT_NAMES": "true",
            "S3PROXY_UNBOUND_OBJECTS": "allow",
            "S3PROXY_UNBOUND_PREFIXES": f"{bucket}/legacy/,elsewhere/",
            "S3PROXY_UNBOUND_BEFORE": turned_on.isoformat(),
        },
    )
    try:
        client = migrating.client()
        assert client.get_object(Bucket=bucket, Key="legacy/a")["Body"].read() == (
            b"written before binding"
        )
        got = client.get_object(Bucket=bucket, Key="legacy/m", Range="bytes=-10")
        assert got["Body"].read() == b"legacy end"
        assert client.head_object(Bucket=bucket, Key="legacy/m")["ContentLength"] == (
            5 * 1024 * 1024 + 10
        )
        _refused_everywhere(client, bucket, "legacy/late")  # modified after binding began
        _refused_everywhere(client, bucket, "other/b")  # outside the prefixes
        # an old unbound object moved into the allowed prefix is new there: refused
        raw.copy_object(
            Bucket=bucket, Key="legacy/moved", CopySource={"Bucket": bucket, "Key": "other/b"}
        )
        _refused_everywhere(client, bucket, "legacy/moved")
        # new writes are bound, and copies of allowed objects re-encrypted bound to the new name
        client.copy_object(
            Bucket=bucket, Key="new/a", CopySource={"Bucket": bucket, "Key": "legacy/a"}
        )
        assert client.get_object(Bucket=bucket, Key="new/a")["Body"].read() == (
            b"written before binding"
        )
        head = raw.get_object(Bucket=bucket, Key="new/a", Range="bytes=0-255")["Body"].read()
        assert parse_header(head).name_bound
        # a copy onto itself (a metadata change) binds it in place, and it stays readable
        client.copy_object(
            Bucket=bucket,
            Key="legacy/m",
            CopySource={"Bucket": bucket, "Key": "legacy/m"},
            MetadataDirective="REPLACE",
            Metadata={"migrated": "yes"},
        )
        head = raw.get_object(Bucket=bucket, Key="legacy/m", Range="bytes=0-255")["Body"].read()
        assert parse_header(head).name_bound and parse_header(head).whole_object
        got = client.get_object(Bucket=bucket, Key="legacy/m")
        assert got["Metadata"] == {"migrated": "yes"}
        assert got["Body"].read() == b"l" * (5 * 1024 * 1024) + b"legacy end"
    finally:
        migrating.stop()


def test_the_unbound_allowance_is_parsed_like_the_unencrypted_one() -> None:
    from s3proxy.config import ConfigError, load

    base = {"S3PROXY_VAULT_TRANSIT_KEY": "k", "VAULT_ADDR": "http://127.0.0.1:8200"}
    base["VAULT_TOKEN"] = "t"
    assert not load(base).unbound.allow  # refuse by default
    config = load(
        {
            **base,
            "S3PROXY_BIND_OBJECT_NAMES": "true",
            "S3PROXY_UNBOUND_OBJECTS": "allow",
            "S3PROXY_UNBOUND_PREFIXES": "b/old/, c/",
            "S3PROXY_UNBOUND_BEFORE": "2026-11-01T00:00:00Z",
        }
    )
    before = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert config.unbound.prefixes == ("b/old/", "c/") and config.unbound.before == before
    assert config.unbound.allows("b", "old/x", before - dt.timedelta(seconds=1))
    assert not config.unbound.allows("b", "old/x", before)
    assert not config.unbound.allows("b", "new/x", before - dt.timedelta(days=1))
    assert not config.unbound.allows("c", "x", None)  # no Last-Modified: not shown to be old
    for bad, name in (
        ({"S3PROXY_UNBOUND_OBJECTS": "maybe"}, "S3PROXY_UNBOUND_OBJECTS"),
        ({"S3PROXY_UNBOUND_BEFORE": "yesterday"}, "S3PROXY_UNBOUND_BEFORE"),
    ):
        with pytest.raises(ConfigError, match=name):
            load({**base, **bad})
