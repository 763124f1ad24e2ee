"""The Go clients of the workloads this proxy is for (traffic-capture tools and backups written
in Go): the AWS SDK for Go v2 and minio-go v7, as Debian packages them (`make system-deps`),
built from tests/go/ and run through a proxy in front of moto, a real Ceph RGW and LocalStack.
Each program puts, reads (whole and ranged), HEADs or stats, lists, copies and deletes objects,
in parts too (the SDK's upload manager; minio-go's multipart, and a body of unknown length), and
checks sizes and ETags against what it sent (tests/go/src/*/main.go)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest

from s3proxy.devstack import S3Server, Vault, clean_env
from tests.conftest import ProxyProcess, start_proxy

if TYPE_CHECKING:
    from tests.rgw import RGW

pytest_plugins = ["tests.rgw", "tests.localstack"]
pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parent.parent
GO_SOURCES = REPO / "tests" / "go"
# Debian's Go libraries (golang-github-aws-aws-sdk-go-v2-dev, golang-github-minio-minio-go-v7-dev)
DEBIAN_GOPATH = Path("/usr/share/gocode")
PROGRAMS = ("s3sdkv2", "miniogo")


class Store(NamedTuple):
    proxy: ProxyProcess
    server: S3Server | RGW


@pytest.fixture(scope="session")
def go_clients(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two programs, built once (GOPATH mode: Debian's packages are the only module source
    here). The build cache lives in .venv, so later runs compile only what changed."""
    go = shutil.which("go")
    assert go, "Go is needed for the Go SDK tests: run `make system-deps`"
    for library in ("github.com/aws/aws-sdk-go-v2", "github.com/minio/minio-go/v7"):
        assert (DEBIAN_GOPATH / "src" / library).is_dir(), f"{library}: run `make system-deps`"
    out = tmp_path_factory.mktemp("go-clients")
    env = clean_env() | {
        "GO111MODULE": "off",
        "GOPATH": f"{GO_SOURCES}{os.pathsep}{DEBIAN_GOPATH}",
        "GOCACHE": str(REPO / ".venv" / "go-cache"),
        "HOME": str(out),
    }
    built = {}
    for name in PROGRAMS:
        binary = out / name
        done = subprocess.run(
            [go, "build", "-o", str(binary), name],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, f"go build {name}:\n{done.stderr}"
        built[name] = binary
    return built


def run_client(binary: Path, proxy: ProxyProcess, bucket: str) -> dict[str, object]:
    """Run one program through ``proxy`` on ``bucket``; its JSON summary."""
    target = proxy.endpoint if binary.name == "s3sdkv2" else f"127.0.0.1:{proxy.port}"
    done = subprocess.run(
        [str(binary), target, bucket, f"go-{uuid.uuid4().hex[:8]}"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{binary.name} through the proxy:\n{done.stderr}"
    summary: dict[str, object] = json.loads(done.stdout)
    return summary


@pytest.fixture(scope="module", params=["moto", "rgw", "localstack"])
def store(request: pytest.FixtureRequest, workdir: Path, vault: Vault) -> Iterator[Store]:
    """A proxy with default settings in front of each store in turn, and the store."""
    server = request.getfixturevalue({"moto": "s3"}.get(request.param, request.param))
    proxy = start_proxy(workdir, vault, server)
    yield Store(proxy, server)
    proxy.stop()


@pytest.mark.parametrize("program", PROGRAMS)
def test_through_a_proxy(go_clients: dict[str, Path], store: Store, program: str) -> None:
    bucket = f"g-{uuid.uuid4().hex[:12]}"
    store.server.client().create_bucket(Bucket=bucket)
    summary = run_client(go_clients[program], store.proxy, bucket)
    assert summary["ok"] is True and int(str(summary["checks"])) > 30
