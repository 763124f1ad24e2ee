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


def _vault_only(vault: Vault, s3: S3Server) -> dict[str, str]:
    env = proxy_env(vault, s3, port=1)  # only the Vault settings matter here
    env.update({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "S3PROXY_S3_ENDPOINT": ""})
    return env


def _manifest(raw: Any, bucket: str, key: str) -> str:
    tags = raw.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return str(next(t["Value"] for t in tags if t["Key"] == "s3proxy-manifest"))


def _streams(blob: bytes) -> list[bytes]:
    """The stored streams of an object, one after the other."""
    found, offset = [], 0
    while offset < len(blob):
        header = parse_header(blob[offset : offset + HEADER_SIZE])
        size = ciphertext_length(header.plaintext_length, header.segment_size, header.version)
        found.append(blob[offset : offset + size])
        offset += size
    return found


def test_break_glass_decrypt_needs_only_vault(
    workdir: Path, vault: Vault, s3: S3Server, client: Any, raw: Any, bucket: str, tmp_path: Path
) -> None:
    single = os.urandom(3 * 65536 + 7)
    parts = [os.urandom(5 * MiB), os.urandom(1234)]
    client.put_object(Bucket=bucket, Key="single", Body=single)
    upload_multipart(client, bucket, "multi", parts)
    env = _vault_only(vault, s3)
    proof = {"single": [], "multi": ["--manifest", _manifest(raw, bucket, "multi")]}
    for key, plaintext in [("single", single), ("multi", b"".join(parts))]:
        stored = raw.get_object(Bucket=bucket, Key=key)["Body"].read()
        (tmp_path / key).write_bytes(stored)
        out = tmp_path / f"{key}.out"
        done = _command(
            ["decrypt", "--in", str(tmp_path / key), "--out", str(out), *proof[key]], env
        )
        assert done.returncode == 0, done.stderr.decode()
        assert out.read_bytes() == plaintext and oct(out.stat().st_mode & 0o777) == "0o600"
        piped = _command(["decrypt", *proof[key]], env, input=stored)
        assert piped.returncode == 0 and piped.stdout == plaintext
    # with the object's name, the manifest is read from the store (the S3 settings of serve)
    named = ["--bucket", bucket, "--key", "multi"]
    fetched = _command(
        ["decrypt", "--in", str(tmp_path / "multi"), *named], proxy_env(vault, s3, port=1)
    )
    assert fetched.returncode == 0 and fetched.stdout == b"".join(parts), fetched.stderr.decode()
    unproven = _command(["decrypt", "--in", str(tmp_path / "multi")], env)
    assert unproven.returncode == 1 and unproven.stdout == b""
    assert b"--manifest" in unproven.stderr
    truncated = _command(["decrypt"], env, input=(tmp_path / "single").read_bytes()[:-10])
    assert truncated.returncode == 1 and truncated.stdout == b""
    assert b"Nothing was written" in truncated.stderr


def test_break_glass_decrypt_refuses_reshaped_objects_and_writes_nothing(
    vault: Vault, s3: S3Server, client: Any, raw: Any, bucket: str, tmp_path: Path
) -> None:
    """Issue 18: every stream authenticates, yet the object is not the one written; the
    emergency reader must refuse it as a GET does, and leave no plaintext behind."""
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1234)]
    upload_multipart(client, bucket, "multi", parts)
    client.put_object(Bucket=bucket, Key="a", Body=b"the first object")
    client.put_object(Bucket=bucket, Key="b", Body=b"the second object")
    stored = {k: raw.get_object(Bucket=bucket, Key=k)["Body"].read() for k in ("multi", "a", "b")}
    p1, p2, p3 = _streams(stored["multi"])
    reshaped = {
        "last part dropped": p1 + p2,
        "parts swapped": p2 + p1 + p3,
        "middle part dropped": p1 + p3,
        "two PutObjects concatenated": stored["a"] + stored["b"],
        "one part on its own": p2,
        "the first part on its own": p1,
    }
    vault_only = _vault_only(vault, s3)
    with_store = proxy_env(vault, s3, port=1)
    proofs = [
        (vault_only, []),
        (vault_only, ["--manifest", _manifest(raw, bucket, "multi")]),
        (with_store, ["--bucket", bucket, "--key", "multi"]),  # the manifest from the store
    ]
    out = tmp_path / "plain.out"
    for name, blob in reshaped.items():
        source = tmp_path / "stored"
        source.write_bytes(blob)
        for env, proof in proofs:
            out.write_bytes(b"what was there before")
            done = _command(["decrypt", "--in", str(source), "--out", str(out), *proof], env)
            assert done.returncode == 1, (name, proof, done.stderr.decode())
            assert b"Nothing was written" in done.stderr, name
            assert out.read_bytes() == b"what was there before", name
            assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.out", "stored"], name
        piped = _command(["decrypt", *proofs[1][1]], vault_only, input=blob)
        assert piped.returncode == 1 and piped.stdout == b"", name
    # the honest objects themselves still decrypt
    honest = _command(["decrypt", *proofs[1][1]], vault_only, input=stored["multi"])
    assert honest.returncode == 0 and honest.stdout == b"".join(parts)
    one = _command(["decrypt"], vault_only, input=stored["a"])
    assert one.returncode == 0 and one.stdout == b"the first object"


def test_break_glass_decrypt_checks_the_name_binding(
    workdir: Path, vault: Vault, s3: S3Server, client: Any, raw: Any, bucket: str
) -> None:
    bound = start_proxy(workdir, vault, s3, {"S3PROXY_BIND_OBJECT_NAMES": "true"})
    try:
        bound.client().put_object(Bucket=bucket, Key="salary/alice", Body=b"alice: 100")
    finally:
        bound.stop()
    client.put_object(Bucket=bucket, Key="unbound", Body=b"no binding")
    env = _vault_only(vault, s3)
    alice = raw.get_object(Bucket=bucket, Key="salary/alice")["Body"].read()
    unbound = raw.get_object(Bucket=bucket, Key="unbound")["Body"].read()

    def run(blob: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
        return _command(["decrypt", *args], env, input=blob)

    named = ["--bucket", bucket, "--key", "salary/alice"]
    assert run(alice, *named).stdout == b"alice: 100"
    assert run(alice, "--bucket", bucket, "--key", "salary/bob").returncode == 1
    assert run(alice, "--bucket", "other", "--key", "salary/alice").returncode == 1
    unnamed = run(alice)
    assert unnamed.returncode == 1 and b"--bucket and --key" in unnamed.stderr
    assert run(unbound, *named).stdout == b"no binding"  # a proxy that does not bind reads it
    strict = run(unbound, *named, "--require-binding")
    assert strict.returncode == 1 and strict.stdout == b""
    assert b"not bound to its name" in strict.stderr
    assert run(alice, *named, "--require-binding").stdout == b"alice: 100"


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
        offset += h.stored_length
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
