"""``s3proxy check`` against real OpenBao and moto: passes on a working configuration and names
the failing dependency, one line each, for a wrong Vault token, a missing transit key, a wrong
S3 secret and a missing bucket."""

from __future__ import annotations

import subprocess
import sys

from s3proxy.devstack import S3Server, Vault, proxy_env


def _check(env: dict[str, str], *args: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "s3proxy", "check", *args],
        env=env,
        capture_output=True,
        timeout=120,
    )
    return done.returncode, done.stdout.decode().splitlines()


def _line(lines: list[str], name: str) -> str:
    found = [line for line in lines if line.split(":")[0].split(None, 1)[-1] == name]
    assert len(found) == 1, (name, lines)
    return found[0]


def test_check_passes_on_the_dev_stack(vault: Vault, s3: S3Server, bucket: str) -> None:
    status, lines = _check(proxy_env(vault, s3, port=1), "--bucket", bucket, "--write-test")
    assert status == 0, lines
    for name in ("vault login", "transit key", "upstream credentials", "bucket", "write test"):
        assert _line(lines, name).startswith("ok "), lines
    assert "datakey, decrypt and hmac allowed" in _line(lines, "transit key")
    assert "read back, deleted" in _line(lines, "write test")
    assert lines[-1] == "all checks passed"
    listed = s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    assert listed == []  # the write test cleaned up after itself


def test_check_names_each_failing_dependency(vault: Vault, s3: S3Server, bucket: str) -> None:
    good = proxy_env(vault, s3, port=1)
    cases = [
        ({"VAULT_TOKEN": "not-a-token"}, [], "vault login", "Forbidden"),
        ({"S3PROXY_VAULT_TRANSIT_KEY": "no-such-key"}, [], "transit key", "no-such-key"),
        ({"AWS_SECRET_ACCESS_KEY": "wrong-secret"}, [], "upstream credentials", "Signature"),
        ({}, ["--bucket", "no-such-bucket-s3proxy"], "bucket", "NoSuchBucket"),
    ]
    for change, args, name, reason in cases:
        status, lines = _check({**good, **change}, *args)
        assert status == 1, (change, lines)
        line = _line(lines, name)
        assert line.startswith("FAIL  ") and reason in line, (change, lines)
        failing = [ln for ln in lines if ln.startswith("FAIL")]
        assert failing == [line], (change, lines)  # the one cause, not a cascade
        assert "not-a-token" not in "\n".join(lines) and "wrong-secret" not in "\n".join(lines)
    assert bucket  # (a real bucket exists: the missing one is missing by name)
