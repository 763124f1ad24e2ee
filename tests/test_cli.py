"""Configuration errors at start, and the README's first command (`s3proxy dev`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s3proxy.config import ConfigError, load
from s3proxy.devstack import clean_env, free_port
from tests.conftest import aws_cli

BASE = {
    "S3PROXY_VAULT_TRANSIT_KEY": "k",
    "VAULT_ADDR": "http://127.0.0.1:8200",
    "VAULT_TOKEN": "t",
}


def test_defaults() -> None:
    config = load(BASE)
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 8190)
    assert config.upstream.endpoint == "https://s3.us-east-1.amazonaws.com"
    assert config.vault.transit_mount == "transit" and not config.unencrypted.allow
    gcs = load({**BASE, "S3PROXY_S3_REGION": "auto"})
    assert (
        gcs.upstream.endpoint == "https://storage.googleapis.com" and gcs.upstream.region == "auto"
    )
    assert load({**BASE, "AWS_REGION": "eu-central-1"}).upstream.endpoint.endswith(
        "eu-central-1.amazonaws.com"
    )


def test_a_remote_listen_address_needs_consent_and_client_authentication() -> None:
    # consent alone is not enough (tests/test_client_auth.py covers the accepted combination)
    with pytest.raises(ConfigError, match="S3PROXY_CLIENT_AUTH=sigv4"):
        load({**BASE, "S3PROXY_LISTEN": "0.0.0.0:8190", "S3PROXY_ALLOW_REMOTE_CLIENTS": "true"})
    assert load({**BASE, "S3PROXY_LISTEN": "[::1]:8190"}).listen_host == "::1"


def test_flags_override_environment() -> None:
    config = load(BASE, {"S3PROXY_LISTEN": "127.0.0.1:9999", "S3PROXY_S3_REGION": "eu-west-1"})
    assert config.listen_port == 9999 and config.upstream.region == "eu-west-1"


@pytest.mark.parametrize(
    ("missing_or_bad", "name"),
    [
        ({"S3PROXY_VAULT_TRANSIT_KEY": ""}, "S3PROXY_VAULT_TRANSIT_KEY"),
        ({"VAULT_ADDR": ""}, "VAULT_ADDR"),
        ({"VAULT_ADDR": "vault:8200"}, "VAULT_ADDR"),
        ({"VAULT_TOKEN": ""}, "VAULT_TOKEN"),
        ({"S3PROXY_S3_ENDPOINT": "ftp://x"}, "S3PROXY_S3_ENDPOINT"),
        ({"S3PROXY_S3_ENDPOINT": "http://minio:9000/some/path"}, "S3PROXY_S3_ENDPOINT"),
        ({"S3PROXY_LISTEN": "8190"}, "S3PROXY_LISTEN"),
        ({"S3PROXY_VAULT_TIMEOUT": "soon"}, "S3PROXY_VAULT_TIMEOUT"),
        ({"S3PROXY_UNENCRYPTED_OBJECTS": "maybe"}, "S3PROXY_UNENCRYPTED_OBJECTS"),
        ({"S3PROXY_SEGMENT_SIZE": "12"}, "S3PROXY_SEGMENT_SIZE"),
        ({"S3PROXY_MAX_REQUESTS": "0"}, "S3PROXY_MAX_REQUESTS"),
        ({"S3PROXY_UNENCRYPTED_BEFORE": "yesterday"}, "S3PROXY_UNENCRYPTED_BEFORE"),
        ({"S3PROXY_LISTEN": "0.0.0.0:8190"}, "S3PROXY_ALLOW_REMOTE_CLIENTS"),
        ({"S3PROXY_LISTEN": "10.1.2.3:8190"}, "not a loopback address"),
        ({"S3PROXY_UPSTREAM_CHECKSUM": "md5"}, "S3PROXY_UPSTREAM_CHECKSUM"),
    ],
)
def test_invalid_settings_name_the_variable(missing_or_bad: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load({**BASE, **missing_or_bad})


@pytest.mark.parametrize("name", ["VAULT_ADDR", "S3PROXY_S3_ENDPOINT", "S3PROXY_STS_ENDPOINT"])
def test_urls_with_credentials_are_refused_without_showing_them(name: str) -> None:
    with pytest.raises(ConfigError, match=name) as err:
        load({**BASE, name: "https://admin:hunter2@store.example:9000"})
    assert "hunter2" not in str(err.value) and "admin" not in str(err.value)
    assert "***@store.example:9000" in str(err.value)


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s3cr3t-from-file\n")
    (tmp_path / "token").write_text("session-token\n")
    config = load(
        {
            **BASE,
            "S3PROXY_S3_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "S3PROXY_S3_SECRET_ACCESS_KEY_FILE": str(tmp_path / "secret"),
            "S3PROXY_S3_SESSION_TOKEN_FILE": str(tmp_path / "token"),
        }
    )
    assert config.upstream.credentials.secret_access_key == "s3cr3t-from-file"
    assert config.upstream.credentials.session_token == "session-token"
    with pytest.raises(ConfigError, match="S3PROXY_S3_SECRET_ACCESS_KEY_FILE"):
        load(
            {
                **BASE,
                "S3PROXY_S3_ACCESS_KEY_ID": "AKIAEXAMPLE",
                "S3PROXY_S3_SECRET_ACCESS_KEY_FILE": str(tmp_path / "missing"),
            }
        )


def test_serve_exits_nonzero_with_one_line_naming_the_variable() -> None:
    env = clean_env({"VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_TOKEN": "t"})
    result = subprocess.run(
        [sys.executable, "-m", "s3proxy", "serve"], env=env, capture_output=True, timeout=60
    )
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "S3PROXY_VAULT_TRANSIT_KEY" in lines[0]


def test_dev_command_serves_the_printed_example(tmp_path: Path) -> None:
    port, tls_port = free_port(), str(free_port())
    out_path = tmp_path / "dev.out"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "s3proxy", "dev", "--port", str(port), "--tls-port", tls_port],
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while b"listening on" not in out_path.read_bytes():
            assert proc.poll() is None, out_path.read_text()
            assert time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.2)
        printed = out_path.read_text()
        assert f"AWS_ENDPOINT_URL_S3=http://127.0.0.1:{port}" in printed
        assert "s3 cp hello.txt s3://demo/hello.txt" in printed
        env = clean_env(
            {
                "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
                "AWS_ACCESS_KEY_ID": "any",
                "AWS_SECRET_ACCESS_KEY": "any",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            }
        )
        (tmp_path / "hello.txt").write_text("hello, sovereign world\n")
        up = subprocess.run(
            [aws_cli(), "s3", "cp", "hello.txt", "s3://demo/hello.txt"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert up.returncode == 0, up.stderr.decode()
        down = subprocess.run(
            [aws_cli(), "s3", "cp", "s3://demo/hello.txt", "-"],
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert down.returncode == 0 and down.stdout == b"hello, sovereign world\n"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, out_path.read_text()
