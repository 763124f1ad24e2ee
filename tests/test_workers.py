"""Worker processes (S3PROXY_WORKERS): the CPU count a container may use, and a real supervisor
with two workers sharing the S3 and admin ports, summing metrics, and stopping together on
SIGTERM and on /quitquitquit, and answering the probes for each other."""

from __future__ import annotations

import asyncio
import re
import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from s3proxy.config import ConfigError, load
from s3proxy.core.cpus import quota_cpus, usable_cpus
from s3proxy.devstack import S3Server, Vault, free_port
from s3proxy.server.admin import Admin
from s3proxy.server.lifecycle import Lifecycle
from s3proxy.server.peers import READY, STARTED, Peers
from tests.conftest import ProxyProcess, start_proxy
from tests.test_admin import probe

BASE = {"S3PROXY_VAULT_TRANSIT_KEY": "k", "VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_TOKEN": "t"}


def test_cpus_from_affinity_and_cgroup_quota() -> None:
    assert quota_cpus("max 100000") is None
    assert quota_cpus("150000 100000") == 2  # 1.5 CPUs: two workers
    assert quota_cpus("50000 100000") == 1
    assert quota_cpus(None, "-1", "100000") is None  # cgroup v1, unlimited
    assert quota_cpus(None, "400000", "100000") == 4
    assert quota_cpus("garbage") is None
    assert usable_cpus(8, 2) == 2 and usable_cpus(1, 4) == 1
    assert usable_cpus(16, None) == 1  # no CPU limit: not every core of the host
    assert load({**BASE, "S3PROXY_WORKERS": "3"}).ops.workers == 3
    assert load(BASE).ops.workers >= 1  # auto
    with pytest.raises(ConfigError, match="S3PROXY_WORKERS"):
        load({**BASE, "S3PROXY_WORKERS": "0"})


def _children(pid: int) -> list[int]:
    """The worker processes (not multiprocessing's resource tracker)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    pids = [int(c) for c in text.split()]
    return [p for p in pids if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()]


def _metric(admin: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def _two_workers(
    workdir: Path, vault: Vault, s3: S3Server, tmp_path: Path, **extra: str
) -> tuple[ProxyProcess, int, Path]:
    admin = free_port()
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    proxy = start_proxy(
        workdir,
        vault,
        s3,
        {
            "S3PROXY_WORKERS": "2",
            "S3PROXY_ADMIN_LISTEN": f"127.0.0.1:{admin}",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            **extra,
        },
    )
    return proxy, admin, metrics


def test_two_workers_share_the_port_and_sum_their_metrics(
    workdir: Path, vault: Vault, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    proxy, admin, metrics = _two_workers(workdir, vault, s3, tmp_path)
    try:
        workers = _children(proxy.proc.pid)
        assert len(workers) == 2

        def round_trip(i: int) -> bool:
            client = proxy.client()  # a client (so connections) of its own
            body = f"object {i}".encode() * 100
            client.put_object(Bucket=bucket, Key=f"w/{i}", Body=body)
            return bool(client.get_object(Bucket=bucket, Key=f"w/{i}")["Body"].read() == body)

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(round_trip, range(64)))
        # both workers served requests: each wrote its own metric files
        writers = {
            int(m) for m in re.findall(r"_(\d+)\.db$", "\n".join(map(str, metrics.iterdir())), re.M)
        }
        assert set(workers) <= writers, (workers, writers)
        assert _metric(admin, "s3proxy_requests_total") >= 128  # summed over both
        proxy.proc.send_signal(signal.SIGTERM)
        assert proxy.proc.wait(30) == 0
        assert all(not Path(f"/proc/{w}").exists() for w in workers)
    finally:
        proxy.stop()


def test_quitquitquit_to_one_worker_stops_them_all(
    workdir: Path, vault: Vault, s3: S3Server, tmp_path: Path
) -> None:
    """The worker the request reaches stops, and so do the others, all without the shutdown
    delay (the workload is done), well within it."""
    proxy, admin, _ = _two_workers(workdir, vault, s3, tmp_path, S3PROXY_SHUTDOWN_DELAY="30")
    try:
        _wait_all_started(admin)
        workers = _children(proxy.proc.pid)
        request = urllib.request.Request(f"http://127.0.0.1:{admin}/quitquitquit", method="POST")
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
        assert proxy.proc.wait(15) == 0
        assert all(not Path(f"/proc/{w}").exists() for w in workers)
        assert "another worker ended" in proxy.log_text()
    finally:
        proxy.stop()


def test_sigterm_while_workers_start_is_a_clean_stop(
    workdir: Path, vault: Vault, s3: S3Server, tmp_path: Path
) -> None:
    """SIGTERM that reaches a worker before it handles signals still ends the proxy with 0."""
    proxy, _, _ = _two_workers(workdir, vault, s3, tmp_path)
    try:
        proxy.proc.send_signal(signal.SIGTERM)  # the workers are still importing
        assert proxy.proc.wait(30) == 0
    finally:
        proxy.stop()


def test_probes_answer_for_every_worker(
    workdir: Path, vault: Vault, s3: S3Server, tmp_path: Path
) -> None:
    """Whichever worker a probe reaches, /startup and /readiness say the same once both
    workers have started: each answers for the other too (server/peers.py)."""
    proxy, admin, _ = _two_workers(workdir, vault, s3, tmp_path)
    try:
        _wait_all_started(admin)
        answers = [probe(admin, path)[0] for path in ("/startup", "/readiness") * 20]
        assert answers == [200] * 40
    finally:
        proxy.stop()


def _wait_all_started(admin: int) -> None:
    deadline = time.monotonic() + 30
    while probe(admin, "/readiness")[0] != 200:
        assert time.monotonic() < deadline, "the workers did not become ready"
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("others", "startup", "readiness"),
    [
        ([0], 503, 503),  # the other worker has not started
        ([STARTED], 200, 503),  # started, not ready (Vault, or draining)
        ([STARTED | READY], 200, 200),
        ([STARTED | READY, STARTED], 200, 503),
    ],
)
def test_a_worker_answers_its_probes_for_all(
    others: list[int], startup: int, readiness: int
) -> None:
    async def main() -> tuple[int, int, int]:
        lifecycle = Lifecycle()
        lifecycle.started = True
        slots = [0, *others]
        admin = Admin(lifecycle, lambda: True, False, Peers(slots, 0))
        started = await admin.startup(make_mocked_request("GET", "/startup"))
        ready = await admin.readiness(make_mocked_request("GET", "/readiness"))
        return started.status, ready.status, slots[0]

    assert asyncio.run(main()) == (startup, readiness, STARTED | READY)
