"""Real backup tools, Debian's ``rclone`` and ``s3cmd`` (``make system-deps`` installs them),
configured with nothing but an endpoint and keys. Every test runs twice: ``direct`` against moto
with its real keys (proving the test itself is right) and ``proxy`` through ``s3proxy serve``
with made-up workload keys. Both tools compare the ETags S3 returns with the MD5 they computed,
on upload and in ``check``/``sync``, so these tests need the proxy to return plaintext MD5s."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from dataclasses import dataclass
from hashlib import md5
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from s3proxy.devstack import S3Server, clean_env
from tests.conftest import ProxyProcess

TIMEOUT = 60  # seconds, for every run of a tool
# What the tools print when an ETag does not match the MD5 they computed.
CORRUPTION = (
    "MD5 Sums don't match",  # s3cmd, upload
    "MD5 signatures do not match",  # s3cmd, download
    "corrupted on transfer",  # rclone
)
WORKLOAD_KEYS = ("AKIAWORKLOAD", "workload-secret")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Target:
    """Where a tool sends its requests, and the keys it signs them with."""

    name: str
    url: str
    access_key: str
    secret_key: str

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc


@pytest.fixture(params=["direct", "proxy"])
def target(request: pytest.FixtureRequest, s3: S3Server) -> Target:
    if request.param == "direct":
        return Target("direct", s3.endpoint, s3.access_key, s3.secret_key)
    proxy: ProxyProcess = request.getfixturevalue("proxy")
    return Target("proxy", proxy.endpoint, *WORKLOAD_KEYS)


def _env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """A clean environment (no AWS_* or CA variables; rclone fails with AWS_CA_BUNDLE set) with a
    home of its own, so no configuration of this machine's user is read."""
    env = clean_env({"HOME": str(home), **extra})
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "PYTHONPATH"):
        env.pop(name, None)
    return env


class Tool:
    """Runs one program with a fixed environment; every run must succeed without the program
    reporting a checksum mismatch."""

    def __init__(self, program: str, base: list[str], env: dict[str, str]) -> None:
        found = shutil.which(program)
        assert found, f"{program} is not installed: run `make system-deps`"
        self.argv = [found, *base]
        self.env = env

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [*self.argv, *args]
        result = subprocess.run(
            cmd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        output = result.stdout + result.stderr
        shown = " ".join(cmd[:1] + list(args))
        mismatches = [line for line in output.splitlines() if any(c in line for c in CORRUPTION)]
        if mismatches:
            first = list(dict.fromkeys(mismatches))[:4]
            pytest.fail(
                f"{shown}: checksum mismatch reported ({len(mismatches)} lines):\n"
                + "\n".join(first),
                pytrace=False,
            )
        assert result.returncode == 0, (
            f"{shown} exited {result.returncode}\nstdout:\n{result.stdout[-3000:]}\n"
            f"stderr:\n{result.stderr[-3000:]}"
        )
        return result


@pytest.fixture
def rclone(target: Target, tmp_path: Path) -> Tool:
    """rclone configured only through environment variables: remote ``target:``."""
    home = tmp_path / "rclone-home"
    home.mkdir()
    config = home / "rclone.conf"
    config.write_text("")
    remote = {
        "TYPE": "s3",
        "PROVIDER": "Other",
        "ENDPOINT": target.url,
        "ACCESS_KEY_ID": target.access_key,
        "SECRET_ACCESS_KEY": target.secret_key,
        "REGION": "us-east-1",
    }
    env = _env(
        home,
        {
            "RCLONE_CONFIG": str(config),
            **{f"RCLONE_CONFIG_TARGET_{k}": v for k, v in remote.items()},
        },
    )
    return Tool("rclone", [], env)


@pytest.fixture
def s3cmd(target: Target, tmp_path: Path) -> Tool:
    """s3cmd with a configuration file naming only the endpoint (path style) and keys."""
    home = tmp_path / "s3cmd-home"
    home.mkdir()
    config = home / ".s3cfg"
    config.write_text(
        "[default]\n"
        f"host_base = {target.host}\n"
        f"host_bucket = {target.host}\n"
        "use_https = False\n"
        f"access_key = {target.access_key}\n"
        f"secret_key = {target.secret_key}\n"
    )
    return Tool("s3cmd", ["-c", str(config)], _env(home, {}))


def _data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _check_stored(raw: Any, target: Target, bucket: str, key: str, data: bytes) -> None:
    """moto holds the plaintext when written directly, something else through the proxy."""
    stored = raw.get_object(Bucket=bucket, Key=key)["Body"].read()
    if target.name == "direct":
        assert stored == data
    else:
        assert stored != data
        assert data[:4096] not in stored


def _three_files(root: Path) -> dict[str, bytes]:
    files = {
        "a.bin": _data(1000, 1),
        "b.txt": b"backup me\n" * 3000,
        "sub/c.bin": _data(200_000, 2),
    }
    for name, data in files.items():
        _write(root / name, data)
    return files


# --- rclone -----------------------------------------------------------------------------------


def test_rclone_copyto_round_trip(
    rclone: Tool, target: Target, raw: Any, bucket: str, tmp_path: Path
) -> None:
    data = _data(300_000, 10)
    src = _write(tmp_path / "up" / "file.bin", data)
    rclone("copyto", str(src), f"target:{bucket}/dir/file.bin")
    _check_stored(raw, target, bucket, "dir/file.bin", data)
    dst = tmp_path / "down" / "file.bin"
    rclone("copyto", f"target:{bucket}/dir/file.bin", str(dst))
    assert dst.read_bytes() == data


def test_rclone_check(rclone: Tool, bucket: str, tmp_path: Path) -> None:
    local = tmp_path / "local"
    _three_files(local)
    rclone("copy", str(local), f"target:{bucket}/backup")
    result = rclone("check", str(local), f"target:{bucket}/backup")
    assert "0 differences found" in result.stderr
    assert "3 matching files" in result.stderr


def test_rclone_check_download(rclone: Tool, bucket: str, tmp_path: Path) -> None:
    local = tmp_path / "local"
    _three_files(local)
    rclone("copy", str(local), f"target:{bucket}/backup")
    result = rclone("check", "--download", str(local), f"target:{bucket}/backup")
    assert "0 differences found" in result.stderr
    assert "3 matching files" in result.stderr


def test_rclone_lsjson_shows_plaintext_size_and_md5(
    rclone: Tool, bucket: str, tmp_path: Path
) -> None:
    data = _data(123_457, 11)
    src = _write(tmp_path / "file.bin", data)
    rclone("copyto", str(src), f"target:{bucket}/dir/file.bin")
    listing = json.loads(rclone("lsjson", "--hash", f"target:{bucket}/dir").stdout)
    assert [(e["Path"], e["Size"], e["IsDir"]) for e in listing] == [("file.bin", len(data), False)]
    assert listing[0]["Hashes"]["md5"] == md5(data).hexdigest()


def test_rclone_multipart_round_trip(
    rclone: Tool, target: Target, raw: Any, bucket: str, tmp_path: Path
) -> None:
    data = _data(12 * MIB + 12345, 12)
    src = _write(tmp_path / "up" / "big.bin", data)
    # Three parts (5, 5 and 2 MiB), sent up to four at a time, not in order. rclone's first
    # attempt fails in both variants: moto answers CompleteMultipartUpload with
    # `x-amz-version-id: null` on an unversioned bucket, then 400 to rclone's HEAD
    # `?versionId=null`; rclone's own retry finds the object complete and succeeds.
    multipart = ["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"]
    rclone("copyto", *multipart, str(src), f"target:{bucket}/big.bin")
    assert raw.head_object(Bucket=bucket, Key="big.bin")["ETag"].endswith('-3"')
    _check_stored(raw, target, bucket, "big.bin", data)
    dst = tmp_path / "down" / "big.bin"
    rclone("copyto", f"target:{bucket}/big.bin", str(dst))
    assert dst.read_bytes() == data
    rclone("check", "--download", str(src.parent), f"target:{bucket}", "--include", "big.bin")


# --- s3cmd ------------------------------------------------------------------------------------


def test_s3cmd_put_get_round_trip(
    s3cmd: Tool, target: Target, raw: Any, bucket: str, tmp_path: Path
) -> None:
    data = _data(300_000, 20)
    src = _write(tmp_path / "file.bin", data)
    s3cmd("put", str(src), f"s3://{bucket}/dir/file.bin")
    _check_stored(raw, target, bucket, "dir/file.bin", data)
    dst = tmp_path / "down.bin"
    s3cmd("get", f"s3://{bucket}/dir/file.bin", str(dst))
    assert dst.read_bytes() == data


def test_s3cmd_sync_up_again_and_down(s3cmd: Tool, bucket: str, tmp_path: Path) -> None:
    local = tmp_path / "local"
    files = _three_files(local)
    first = s3cmd("sync", f"{local}/", f"s3://{bucket}/backup/")
    assert first.stdout.count("upload:") == 3, first.stdout
    second = s3cmd("sync", f"{local}/", f"s3://{bucket}/backup/")
    assert "upload:" not in second.stdout, second.stdout
    restored = tmp_path / "restored"
    restored.mkdir()
    s3cmd("sync", f"s3://{bucket}/backup/", f"{restored}/")
    got = {str(p.relative_to(restored)): p.read_bytes() for p in restored.rglob("*") if p.is_file()}
    assert got == files


def test_s3cmd_multipart_put_round_trip(
    s3cmd: Tool, target: Target, raw: Any, bucket: str, tmp_path: Path
) -> None:
    data = _data(12 * MIB + 12345, 21)
    src = _write(tmp_path / "big.bin", data)
    s3cmd("put", "--multipart-chunk-size-mb=5", str(src), f"s3://{bucket}/big.bin")
    assert raw.head_object(Bucket=bucket, Key="big.bin")["ETag"].endswith('-3"')
    _check_stored(raw, target, bucket, "big.bin", data)
    dst = tmp_path / "down.bin"
    s3cmd("get", f"s3://{bucket}/big.bin", str(dst))
    assert dst.read_bytes() == data
