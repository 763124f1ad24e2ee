"""The admin listener of real proxy processes: /startup waits for Vault, credentials and a key
check; /readiness fails while draining, and while Vault is down if configured to; /liveness
answers; POST /quitquitquit ends the process with status 0, from loopback only."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from s3proxy.config import ConfigError, load
from s3proxy.devstack import S3Server, Vault, free_port, start_vault
from s3proxy.server.admin import Admin
from s3proxy.server.lifecycle import Lifecycle
from tests.conftest import ProxyProcess, start_proxy

pytestmark = pytest.mark.timeout(120)


def probe(port: int, path: str, method: str = "GET") -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait_status(port: int, path: str, status: int, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    last: tuple[int, str] = (0, "")
    while time.monotonic() < deadline:
        last = probe(port, path)
        if last[0] == status:
            return last[1]
        time.sleep(0.1)
    raise AssertionError(f"{path} stayed {last} instead of {status}")


@pytest.fixture
def started(workdir: Path, vault: Vault, s3: S3Server) -> Iterator[list[ProxyProcess]]:
    procs: list[ProxyProcess] = []
    yield procs
    for p in procs:
        p.stop()


def run(
    procs: list[ProxyProcess], workdir: Path, vault: Vault, s3: S3Server, **extra: str
) -> tuple[ProxyProcess, int]:
    admin = free_port()
    env = {"S3PROXY_ADMIN_LISTEN": f"127.0.0.1:{admin}", **extra}
    p = start_proxy(workdir, vault, s3, env)
    procs.append(p)
    return p, admin


def test_startup_waits_for_vault_then_readiness_follows_it(
    started: list[ProxyProcess], workdir: Path, vault: Vault, s3: S3Server, tmp_path: Path
) -> None:
    vault_port = free_port()  # nothing listens here yet
    late = {
        "VAULT_ADDR": f"http://127.0.0.1:{vault_port}",
        "S3PROXY_VAULT_CHECK_INTERVAL": "0.3",
    }
    strict, strict_admin = run(
        started, workdir, vault, s3, **late, S3PROXY_READINESS_REQUIRES_VAULT="true"
    )
    lenient, lenient_admin = run(started, workdir, vault, s3, **late)
    for admin in (strict_admin, lenient_admin):
        assert probe(admin, "/liveness") == (200, "alive\n")
        status, body = probe(admin, "/startup")
        assert status == 503 and "Vault" in body, body
        assert probe(admin, "/readiness")[0] == 503
    time.sleep(1.0)
    assert probe(strict_admin, "/startup")[0] == 503  # still no Vault: still not started

    own = start_vault(tmp_path, port=vault_port, token=vault.token)
    try:
        for admin in (strict_admin, lenient_admin):
            wait_status(admin, "/startup", 200)
            wait_status(admin, "/readiness", 200)
        own.stop()
        # Only the proxy told to depend on Vault stops being ready; both stay alive.
        assert "Vault" in wait_status(strict_admin, "/readiness", 503, timeout=15)
        assert probe(lenient_admin, "/readiness")[0] == 200
        assert probe(strict_admin, "/liveness")[0] == 200
        assert probe(strict_admin, "/startup")[0] == 200  # started stays started
    finally:
        own.stop()
    assert strict.proc.poll() is None and lenient.proc.poll() is None


def test_startup_waits_for_upstream_credentials(
    started: list[ProxyProcess], workdir: Path, vault: Vault, s3: S3Server
) -> None:
    _, admin = run(started, workdir, vault, s3, AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")
    time.sleep(1.5)
    status, body = probe(admin, "/startup")
    assert status == 503 and "credentials" in body, body
    assert probe(admin, "/readiness")[0] == 503


def test_readiness_fails_at_once_on_sigterm_while_the_listener_stays_open(
    started: list[ProxyProcess], workdir: Path, vault: Vault, s3: S3Server, bucket: str
) -> None:
    p, admin = run(started, workdir, vault, s3, S3PROXY_SHUTDOWN_DELAY="3")
    wait_status(admin, "/readiness", 200)
    p.proc.terminate()
    assert wait_status(admin, "/readiness", 503, timeout=1) == "draining\n"
    assert probe(admin, "/liveness")[0] == 200
    # Within the delay the S3 port still serves.
    p.client().put_object(Bucket=bucket, Key="during-delay", Body=b"x")
    assert p.proc.wait(15) == 0
    assert "shutting down (SIGTERM)" in p.log_text()


def test_quitquitquit_from_loopback_ends_the_process_with_status_0(
    started: list[ProxyProcess], workdir: Path, vault: Vault, s3: S3Server
) -> None:
    p, admin = run(started, workdir, vault, s3, S3PROXY_SHUTDOWN_DELAY="20")
    wait_status(admin, "/startup", 200)
    assert probe(admin, "/quitquitquit", "GET")[0] == 405
    assert p.proc.poll() is None
    assert probe(admin, "/quitquitquit", "POST") == (200, "stopping\n")
    assert p.proc.wait(10) == 0  # the shutdown delay does not apply: the workload is done
    assert "shutting down (quitquitquit)" in p.log_text()


async def _quit_from(peer: str) -> tuple[int, bool]:
    lifecycle = Lifecycle()
    admin = Admin(lifecycle, lambda: True, readiness_requires_vault=False)
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 40000) if name == "peername" else default
    )
    request = make_mocked_request("POST", "/quitquitquit", transport=transport)
    resp = await admin.quit(request)
    return resp.status, lifecycle.draining


@pytest.mark.parametrize(
    ("peer", "status"),
    [
        ("10.1.2.3", 403),
        ("192.168.0.7", 403),
        ("::ffff:10.0.0.1", 403),
        ("127.0.0.1", 200),
        ("::1", 200),
        ("::ffff:127.0.0.1", 200),
    ],
)
def test_quitquitquit_is_refused_from_other_peers(peer: str, status: int) -> None:
    answered, draining = asyncio.run(_quit_from(peer))
    assert answered == status
    assert draining is (status == 200)


def test_operations_settings() -> None:
    base = {
        "S3PROXY_VAULT_TRANSIT_KEY": "k",
        "VAULT_ADDR": "http://127.0.0.1:1",
        "VAULT_TOKEN": "t",
    }
    ops = load(base).ops
    assert ops.admin_listen == ("0.0.0.0", 8191) and not ops.readiness_requires_vault
    assert ops.log_format == "json" and (ops.shutdown_delay, ops.shutdown_grace) == (0, 25)
    ops = load(
        base,
        {
            "S3PROXY_ADMIN_LISTEN": "off",
            "S3PROXY_READINESS_REQUIRES_VAULT": "TRUE",
            "S3PROXY_LOG_FORMAT": "text",
            "S3PROXY_SHUTDOWN_DELAY": "5",
            "S3PROXY_SHUTDOWN_GRACE": "20.5",
        },
    ).ops
    assert ops.admin_listen is None and ops.readiness_requires_vault
    assert ops.log_format == "text" and (ops.shutdown_delay, ops.shutdown_grace) == (5, 20.5)
    for name, bad in [
        ("S3PROXY_ADMIN_LISTEN", "8191"),
        ("S3PROXY_READINESS_REQUIRES_VAULT", "maybe"),
        ("S3PROXY_LOG_FORMAT", "xml"),
        ("S3PROXY_SHUTDOWN_DELAY", "-1"),
        ("S3PROXY_SHUTDOWN_GRACE", "soon"),
    ]:
        with pytest.raises(ConfigError, match=name):
            load({**base, name: bad})
