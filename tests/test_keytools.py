"""Operator commands against real OpenBao and moto: break-glass ``s3proxy decrypt`` and key
rotation with ``s3proxy rewrap``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3proxy.core.format import parse_header
from s3proxy.core.layout import Layout
from s3proxy.core.sizes import HEADER_SIZE, ciphertext_length
from s3proxy.devstack import S3Server, Vault, proxy_env, start_vault
from tests.conftest import start_proxy, upload_multipart

MiB = 1024 * 1024
NO_REUSE = {"S3PROXY_DATAKEY_REUSE_SECONDS": "0", "S3PROXY_KEY_CACHE_SECONDS": "0"}


def _command(
    args: list[str], env: dict[str, str], **kwargs: Any
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "s3proxy", *args],
        env=env,
        capture_output=True,
        timeout=300,
        **kwargs,
    )


def test_break_glass_decrypt_needs_only_vault(
    workdir: Path, vault: Vault, s3: S3Server, client: Any, raw: Any, bucket: str, tmp_path: Path
) -> None:
    single = os.urandom(3 * 65536 + 7)
    parts = [os.urandom(5 * MiB), os.urandom(1234)]
    client.put_object(Bucket=bucket, Key="single", Body=single)
    upload_multipart(client, bucket, "multi", parts)
    env = proxy_env(vault, s3, port=1)  # only the Vault settings matter here
    env.update({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "S3PROXY_S3_ENDPOINT": ""})
    for key, plaintext in [("single", single), ("multi", b"".join(parts))]:
        stored = raw.get_object(Bucket=bucket, Key=key)["Body"].read()
        (tmp_path / key).write_bytes(stored)
        done = _command(
            ["decrypt", "--in", str(tmp_path / key), "--out", str(tmp_path / f"{key}.out")], env
        )
        assert done.returncode == 0, done.stderr.decode()
        assert (tmp_path / f"{key}.out").read_bytes() == plaintext
        piped = _command(["decrypt"], env, input=stored)
        assert piped.returncode == 0 and piped.stdout == plaintext
    truncated = _command(["decrypt"], env, input=(tmp_path / "single").read_bytes()[:-10])
    assert truncated.returncode == 1
    assert b"incomplete" in truncated.stderr


@pytest.fixture
def own_vault(workdir: Path) -> Iterator[Vault]:
    v = start_vault(workdir)
    yield v
    v.stop()


def _versions(raw: Any, bucket: str, key: str) -> set[str]:
    blob = raw.get_object(Bucket=bucket, Key=key)["Body"].read()
    headers = []
    offset = 0
    while offset < len(blob):
        h = parse_header(blob[offset : offset + HEADER_SIZE])
        headers.append(h)
        offset += ciphertext_length(h.plaintext_length, h.segment_size, 2)
    Layout.from_headers(headers)
    return {h.wrapped_key.split(":")[1] for h in headers}


def test_rotation_rewrap_and_min_decryption_version(
    workdir: Path, own_vault: Vault, s3: S3Server, raw: Any, bucket: str
) -> None:
    proxy = start_proxy(workdir, own_vault, s3, NO_REUSE)
    try:
        client = proxy.client()
        objects: dict[str, bytes] = {}
        for i in range(3):
            objects[f"old/{i}"] = os.urandom(1000 * (i + 1))
            client.put_object(
                Bucket=bucket,
                Key=f"old/{i}",
                Body=objects[f"old/{i}"],
                Metadata={"n": str(i)},
                ContentType="text/x-old",
                Tagging="team=a&note=a%20b%2Bc%3Dd%3Ae%2Ff%40g",
            )
        parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(99)]
        upload_multipart(client, bucket, "old/multi", parts)
        objects["old/multi"] = b"".join(parts)
        raw.put_object(Bucket=bucket, Key="plain", Body=b"not ours")
        assert own_vault.api("POST", "transit/keys/s3proxy/rotate")[0] in (200, 204)
        objects["new/0"] = os.urandom(5000)
        client.put_object(Bucket=bucket, Key="new/0", Body=objects["new/0"])
        assert _versions(raw, bucket, "new/0") == {"v2"}
        assert _versions(raw, bucket, "old/multi") == {"v1"}
    finally:
        proxy.stop()

    env = proxy_env(own_vault, s3, port=1)
    done = _command(["rewrap", "--bucket", bucket, "--verbose"], env)
    assert done.returncode == 0, done.stderr.decode()
    report = done.stderr.decode()
    assert "rewritten old/multi" in report and "current   new/0" in report
    assert "skipped   plain" in report
    assert "rewrapped 4, already current 1, not encrypted 1, failed 0" in report
    for key in objects:
        assert _versions(raw, bucket, key) == {"v2"}, key
    etags = {k: raw.head_object(Bucket=bucket, Key=k)["ETag"] for k in objects}
    again = _command(["rewrap", "--bucket", bucket], env)
    assert again.returncode == 0 and "rewrapped 0, already current 5" in again.stderr.decode()
    assert etags == {k: raw.head_object(Bucket=bucket, Key=k)["ETag"] for k in objects}

    status, _ = own_vault.api("POST", "transit/keys/s3proxy/config", {"min_decryption_version": 2})
    assert status in (200, 204)
    fresh = start_proxy(workdir, own_vault, s3, NO_REUSE)
    try:
        c = fresh.client()
        for key, plaintext in objects.items():
            got = c.get_object(Bucket=bucket, Key=key)
            assert got["Body"].read() == plaintext, key
        meta = c.head_object(Bucket=bucket, Key="old/1")
        assert meta["Metadata"] == {"n": "1"} and meta["ContentType"] == "text/x-old"
        assert c.get_object_tagging(Bucket=bucket, Key="old/1")["TagSet"] == [
            {"Key": "team", "Value": "a"},
            {"Key": "note", "Value": "a b+c=d:e/f@g"},
        ]
    finally:
        fresh.stop()
