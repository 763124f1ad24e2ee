"""Copies of encrypted objects as real clients make them: `aws s3 cp` between keys and buckets
and boto3's managed copy, both of which use UploadPartCopy with `x-amz-copy-source-range` for
objects of 8 MiB or more. A range that is exactly one stored stream is copied by the upstream;
any other range goes through the proxy, decrypted and encrypted anew. (Their exact upstream
requests, and copy ranges checked as S3 checks them: tests/test_inproc_requests.py,
tests/test_inproc_writes.py.)"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig

from tests.conftest import ProxyProcess, aws_cli, cli_env

MiB = 1024 * 1024


def _copy_lines(proxy: ProxyProcess) -> list[dict[str, Any]]:
    return [
        line
        for line in proxy.log_lines()
        if "UploadPartCopy ->" in line.get("message", "") and "upstream_bytes" in line
    ]


def _wait_for_copy_lines(proxy: ProxyProcess, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while len(lines := _copy_lines(proxy)) < count:
        assert time.monotonic() < deadline, lines
        time.sleep(0.05)
    return lines


def _etag(parts: list[bytes]) -> str:
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


def test_aws_cli_copies_a_20mib_object_within_and_across_buckets_server_side(
    proxy: ProxyProcess, s3: Any, bucket: str, tmp_path: Path
) -> None:
    other = f"{bucket}-other"
    s3.client().create_bucket(Bucket=other)
    data = os.urandom(20 * MiB)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    env = cli_env(proxy)

    def aws(*args: str) -> None:
        done = subprocess.run([aws_cli(), *args], env=env, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()

    aws("s3", "cp", str(src), f"s3://{bucket}/big.bin")
    seen = len(_copy_lines(proxy))
    aws("s3", "cp", f"s3://{bucket}/big.bin", f"s3://{bucket}/copy.bin")
    aws("s3", "cp", f"s3://{bucket}/big.bin", f"s3://{other}/copy.bin")
    # Both copies used three 8 MiB-aligned UploadPartCopy ranges, each exactly one stored
    # stream: the upstream copied them; no object bytes came through the proxy.
    lines = _wait_for_copy_lines(proxy, seen + 6)[seen:]
    assert len(lines) == 6
    assert all(int(line["upstream_bytes"]) < 64 * 1024 for line in lines), lines
    client = proxy.client()
    expected = _etag([data[: 8 * MiB], data[8 * MiB : 16 * MiB], data[16 * MiB :]])
    for b in (bucket, other):
        got = client.get_object(Bucket=b, Key="copy.bin")
        assert got["Body"].read() == data
        assert got["ETag"] == expected
    aws("s3", "mv", f"s3://{other}/copy.bin", f"s3://{other}/moved.bin")
    assert client.get_object(Bucket=other, Key="moved.bin")["Body"].read() == data


def test_boto3_managed_copy_unaligned_goes_through_the_proxy(
    proxy: ProxyProcess, bucket: str
) -> None:
    client = proxy.client()
    data = os.urandom(20 * MiB + 5)
    client.put_object(Bucket=bucket, Key="single", Body=data)  # one 20 MiB stream
    seen = len(_copy_lines(proxy))
    # boto3's default managed copy: 8 MiB ranges of a single-stream source, none aligned.
    client.copy({"Bucket": bucket, "Key": "single"}, bucket, "copied")
    lines = _wait_for_copy_lines(proxy, seen + 3)[seen:]
    assert sum(int(line["upstream_bytes"]) for line in lines) >= len(data)  # read through us
    got = client.get_object(Bucket=bucket, Key="copied")
    assert got["Body"].read() == data
    parts = [data[: 8 * MiB], data[8 * MiB : 16 * MiB], data[16 * MiB :]]
    assert got["ETag"] == _etag(parts)
    # And with other part sizes than the source's, from a multipart source.
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=6 * MiB)
    client.copy({"Bucket": bucket, "Key": "copied"}, bucket, "again", Config=config)
    assert client.get_object(Bucket=bucket, Key="again")["Body"].read() == data


def test_boto3_managed_copy_of_a_multipart_object_to_another_bucket_is_server_side(
    proxy: ProxyProcess, s3: Any, bucket: str
) -> None:
    client = proxy.client()
    other = f"{bucket}-to"
    s3.client().create_bucket(Bucket=other)
    data = os.urandom(20 * MiB + 3)
    client.upload_fileobj(io.BytesIO(data), bucket, "mp")  # 8 MiB parts, as s3transfer copies
    seen = len(_copy_lines(proxy))
    client.copy({"Bucket": bucket, "Key": "mp"}, other, "copy")
    lines = _wait_for_copy_lines(proxy, seen + 3)[seen:]
    assert all(int(line["upstream_bytes"]) < 64 * 1024 for line in lines), lines
    got = client.get_object(Bucket=other, Key="copy")
    assert got["Body"].read() == data
    assert got["ETag"] == client.head_object(Bucket=bucket, Key="mp")["ETag"]
