"""Multipart uploads, ranged and parallel downloads, through real clients (the AWS CLI, boto3's
s3transfer) to moto; listings as moto gives them; memory. The proxy's own multipart logic (parts
out of order, retried, through another process, completion refusals, ?partNumber, ranges
across part boundaries, copies of parts) is tested in process: tests/test_inproc_writes.py,
tests/test_inproc_requests.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig

from s3proxy.core.sizes import DEFAULT_SEGMENT_SIZE, ciphertext_length
from s3proxy.devstack import S3Server, Vault
from tests.conftest import (
    ProxyProcess,
    aws_cli,
    cli_env,
    start_proxy,
    tree_peak_rss_mib,
    upload_multipart,
)

MiB = 1024 * 1024
S = DEFAULT_SEGMENT_SIZE


def test_aws_cli_multipart_20mib_up_and_down(
    proxy: ProxyProcess, raw: Any, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(20 * MiB))
    env = cli_env(proxy)
    up = subprocess.run(
        [aws_cli(), "s3", "cp", str(src), f"s3://{bucket}/big.bin"],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert up.returncode == 0, up.stderr.decode()
    stored = raw.head_object(Bucket=bucket, Key="big.bin")
    assert stored["ETag"].endswith('-3"')  # 8 MiB parts: it really was a multipart upload
    assert stored["ContentLength"] == 2 * ciphertext_length(8 * MiB, S, 3) + ciphertext_length(
        4 * MiB, S, 3
    )
    ls = subprocess.run(
        [aws_cli(), "s3", "ls", f"s3://{bucket}/"], env=env, capture_output=True, timeout=120
    )
    assert ls.returncode == 0, ls.stderr.decode()
    assert f" {20 * MiB} big.bin" in ls.stdout.decode()
    dst = tmp_path / "back.bin"
    down = subprocess.run(
        [aws_cli(), "s3", "cp", f"s3://{bucket}/big.bin", str(dst)],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert down.returncode == 0, down.stderr.decode()
    assert dst.read_bytes() == src.read_bytes()
    ranged = subprocess.run(
        [
            aws_cli(),
            "s3api",
            "get-object",
            "--bucket",
            bucket,
            "--key",
            "big.bin",
            "--range",
            f"bytes={8 * MiB - 10}-{8 * MiB + 9}",
            str(tmp_path / "part.bin"),
        ],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert ranged.returncode == 0, ranged.stderr.decode()
    assert (tmp_path / "part.bin").read_bytes() == src.read_bytes()[8 * MiB - 10 : 8 * MiB + 10]


def test_boto3_upload_file_and_download_file_in_parallel(
    client: Any, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(37 * MiB + 11))
    config = TransferConfig(
        multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=10
    )
    client.upload_file(str(src), bucket, "t/src.bin", Config=config)
    assert client.head_object(Bucket=bucket, Key="t/src.bin")["ContentLength"] == 37 * MiB + 11
    dst = tmp_path / "dst.bin"
    client.download_file(bucket, "t/src.bin", str(dst), Config=config)
    assert dst.read_bytes() == src.read_bytes()


def test_abort_and_list_uploads_pass_through(client: Any, raw: Any, bucket: str) -> None:
    uid = client.create_multipart_upload(Bucket=bucket, Key="gone")["UploadId"]
    assert [u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [uid]
    client.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=uid)
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_listings_report_plaintext_sizes(client: Any, raw: Any, bucket: str) -> None:
    sizes = {"empty": 0, "one": 1, "a key with spaces+plus": S + 1, "dir/big": 3 * S + 5}
    for key, size in sizes.items():
        client.put_object(Bucket=bucket, Key=key, Body=os.urandom(size))
    parts = [os.urandom(5 * MiB), os.urandom(777)]
    upload_multipart(client, bucket, "multi", parts)
    sizes["multi"] = sum(len(p) for p in parts)
    raw.put_object(Bucket=bucket, Key="plain", Body=b"x" * 5000)  # not written by the proxy
    sizes["plain"] = 5000
    v2 = client.list_objects_v2(Bucket=bucket)
    assert {o["Key"]: o["Size"] for o in v2["Contents"]} == sizes
    v1 = client.list_objects(Bucket=bucket)
    assert {o["Key"]: o["Size"] for o in v1["Contents"]} == sizes
    page = client.list_objects_v2(Bucket=bucket, Prefix="dir/", Delimiter="/", MaxKeys=1)
    assert [(o["Key"], o["Size"]) for o in page["Contents"]] == [("dir/big", 3 * S + 5)]
    stored = {o["Key"]: o["Size"] for o in raw.list_objects_v2(Bucket=bucket)["Contents"]}
    assert stored["dir/big"] == ciphertext_length(3 * S + 5, S, 3)


def test_version_listings_report_plaintext_sizes(client: Any, bucket: str) -> None:
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = client.put_object(Bucket=bucket, Key="doc", Body=b"a" * 100)["VersionId"]
    v2 = client.put_object(Bucket=bucket, Key="doc", Body=b"b" * 200_000)["VersionId"]
    client.delete_object(Bucket=bucket, Key="doc")
    listed = client.list_object_versions(Bucket=bucket)
    assert {v["VersionId"]: v["Size"] for v in listed["Versions"]} == {v1: 100, v2: 200_000}
    assert len(listed["DeleteMarkers"]) == 1
    old = client.get_object(Bucket=bucket, Key="doc", VersionId=v1)
    assert old["Body"].read() == b"a" * 100
    assert client.head_object(Bucket=bucket, Key="doc", VersionId=v2)["ContentLength"] == 200_000
    client.delete_object(Bucket=bucket, Key="doc", VersionId=v1)
    listed = client.list_object_versions(Bucket=bucket)
    assert [v["VersionId"] for v in listed["Versions"]] == [v2]


def test_memory_stays_bounded_whatever_the_object_size(
    workdir: Path, vault: Vault, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    """A 192 MiB object up (one PutObject, streamed) and down through a fresh proxy: the proxy's
    peak resident memory grows by far less than the object."""
    proxy = start_proxy(workdir, vault, s3)
    try:
        client = proxy.client()
        src = tmp_path / "big"
        with src.open("wb") as f:
            for _ in range(192):
                f.write(os.urandom(MiB))
        baseline = tree_peak_rss_mib(proxy.proc.pid)
        with src.open("rb") as f:
            client.put_object(Bucket=bucket, Key="big", Body=f)
        got = client.get_object(Bucket=bucket, Key="big")
        with (tmp_path / "back").open("wb") as out:
            for chunk in got["Body"].iter_chunks(MiB):
                out.write(chunk)
        grown = tree_peak_rss_mib(proxy.proc.pid) - baseline
        assert (tmp_path / "back").stat().st_size == 192 * MiB
        assert grown < 48, f"proxy peak RSS grew by {grown:.0f} MiB"
    finally:
        proxy.stop()
