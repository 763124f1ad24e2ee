"""Fixtures: a real OpenBao dev server, a signature-enforcing moto S3 server, and proxies in
front of them run as real ``s3proxy serve`` processes. Clients are real boto3 and AWS CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from s3proxy.config import parse_workers
from s3proxy.devstack import (
    S3Server,
    Vault,
    boto3_client,
    clean_env,
    start_proxy_process,
    start_s3,
    start_vault,
)


@dataclass
class ProxyProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"http://localhost:{self.port}"

    def client(self, **config: Any) -> Any:
        """boto3 with its default configuration, as a workload would use it: only the
        endpoint changes; its keys are made up (the proxy ignores them)."""
        kwargs: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": "AKIAWORKLOAD",
            "aws_secret_access_key": "workload-secret",
            "region_name": "us-east-1",
        }
        if config:
            from botocore.config import Config

            kwargs["config"] = Config(**config)
        return boto3_client("s3", **kwargs)

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# The workers every proxy of the suite runs: what the default (`S3PROXY_WORKERS=auto`) gives
# on this machine, or `S3PROXY_TEST_WORKERS=2 make test` (what auto gives a container limited
# to 2 CPUs). Tests that count one process's own Vault calls, logins or memory set
# S3PROXY_WORKERS=1 themselves; tests that count for the whole proxy multiply by this.
PROXY_WORKERS = parse_workers(os.environ.get("S3PROXY_TEST_WORKERS") or "auto")


def start_proxy(
    workdir: Path, vault: Vault, s3: S3Server, extra: Mapping[str, str] | None = None
) -> ProxyProcess:
    extra = {"S3PROXY_WORKERS": str(PROXY_WORKERS), **(extra or {})}
    process, port = start_proxy_process(workdir, vault, s3, extra)
    return ProxyProcess(process.proc, port, process.log_path)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("peers")


@pytest.fixture(scope="session")
def vault(workdir: Path) -> Iterator[Vault]:
    v = start_vault(workdir, token=f"test-token-{uuid.uuid4().hex}")  # unmistakable in a log
    yield v
    v.stop()


# Secrets no proxy log of the whole session may contain (checked when the session ends).
SESSION_SECRETS: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_proxy_log(workdir: Path) -> Iterator[None]:
    """Every proxy log the tests produced, searched for the Vault token and S3 secret of the
    session's peers and the secrets tests registered (issue 11: a grep of all test logs)."""
    yield
    secrets = [s for s in SESSION_SECRETS if len(s) >= 12]
    logs = sorted(workdir.parent.glob("**/proxy-*.log"))
    for log in logs:
        text = log.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"a secret appears in {log}"


@pytest.fixture(scope="session")
def s3(workdir: Path, vault: Vault) -> Iterator[S3Server]:
    server = start_s3(workdir)
    SESSION_SECRETS.extend([server.secret_key, vault.token])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def proxy(workdir: Path, vault: Vault, s3: S3Server) -> Iterator[ProxyProcess]:
    p = start_proxy(workdir, vault, s3)
    yield p
    p.stop()


@pytest.fixture
def bucket(s3: S3Server) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def procs() -> Iterator[list[ProxyProcess]]:
    """Proxy processes a test starts (``start_proxy``), stopped when it ends."""
    started: list[ProxyProcess] = []
    yield started
    for p in started:
        p.stop()


@pytest.fixture
def client(proxy: ProxyProcess) -> Any:
    return proxy.client()


@pytest.fixture
def raw(s3: S3Server) -> Any:
    """A boto3 client talking to moto directly, to see what is stored."""
    return s3.client()


def cli_env(proxy: ProxyProcess) -> dict[str, str]:
    """The AWS CLI's environment: only the endpoint points at the proxy."""
    return clean_env(
        {
            "AWS_ENDPOINT_URL_S3": proxy.endpoint,
            "AWS_ACCESS_KEY_ID": "AKIAWORKLOAD",
            "AWS_SECRET_ACCESS_KEY": "workload-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
    )


def aws_cli() -> str:
    return str(Path(sys.executable).parent / "aws")


def upload_multipart(client: Any, bucket: str, key: str, parts: list[bytes]) -> None:
    """A multipart upload of ``parts`` in order, through whatever endpoint ``client`` uses."""
    uid = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etags = [
        client.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=i + 1, Body=p)["ETag"]
        for i, p in enumerate(parts)
    ]
    client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]},
    )


def tree_peak_rss_mib(pid: int) -> float:
    """The peak resident memory (VmHWM) of a process and all its descendants, summed: with
    worker processes the proxy is a tree, and a container's memory limit covers all of it."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        status = Path(f"/proc/{current}/status").read_text().splitlines()
        total += next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
        children = Path(f"/proc/{current}/task/{current}/children")
        if children.exists():
            pending += [int(c) for c in children.read_text().split()]
    return total


# The in-process proxy in front of the scripted fake upstream (tests/inproc.py).
from tests.inproc import harness  # noqa: E402, F401
