"""``s3proxy serve`` with several worker processes: each runs the whole proxy (its own event loop,
Vault login, caches and upstream connections) on the same ports, which the kernel shares out
(``SO_REUSEPORT``). This process only supervises: it forwards SIGTERM/SIGINT, and when one worker
ends (``/quitquitquit`` reaches one worker; a crash) it stops the others and exits with that
worker's status. Metrics are summed across workers through prometheus-client's multi-process
directory. docs/performance.md, Workers."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import MutableSequence
from types import FrameType

from s3proxy.config import Config
from s3proxy.serve import run_proxy, settle_collector
from s3proxy.server.peers import Peers
from s3proxy.server.tls import prepare
from s3proxy.telemetry.logs import setup_logging

log = logging.getLogger("s3proxy")
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
EXTRA_STOP_SECONDS = 10.0  # beyond a worker's own delay and grace, before it is killed


def serve_one(config: Config, reuse_port: bool = False, peers: Peers | None = None) -> int:
    """The proxy in this process, until it is stopped."""
    settle_collector()
    try:
        asyncio.run(run_proxy(config, reuse_port=reuse_port, peers=peers))
    except OSError as exc:
        print(f"s3proxy: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


def _worker(config: Config, index: int, slots: MutableSequence[int]) -> None:
    setup_logging(config.log_level, config.ops.log_format)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which says
    sys.exit(serve_one(config, reuse_port=True, peers=Peers(slots, index)))


def serve(config: Config) -> int:
    """Run ``config.ops.workers`` workers (one: in this process) until they stop."""
    try:
        config = prepare(config)  # one certificate (and CA written) for every worker
    except OSError as exc:
        print(f"s3proxy: cannot listen: {exc}", file=sys.stderr)
        return 1
    workers = config.ops.workers
    if workers <= 1:
        return serve_one(config)
    own_dir = None
    if not os.environ.get(METRICS_DIR):
        own_dir = tempfile.mkdtemp(prefix="s3proxy-metrics-")
        os.environ[METRICS_DIR] = own_dir  # inherited by the workers, read as they start
    context = multiprocessing.get_context("spawn")
    slots = context.RawArray("B", workers)  # each worker's probe verdicts (server/peers.py)
    procs = [
        context.Process(target=_worker, args=(config, i, slots), name=f"s3proxy-worker-{i}")
        for i in range(workers)
    ]
    stopping = False

    def signal_all(signum: int) -> None:
        for proc in procs:
            if proc.pid is not None and proc.exitcode is None:
                os.kill(proc.pid, signum)

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        signal_all(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for proc in procs:
            proc.start()
        log.info("s3proxy supervising %d workers: %s", workers, [p.pid for p in procs])
        ready = multiprocessing.connection.wait([p.sentinel for p in procs])
        first = next(p for p in procs if p.sentinel in ready)
        first.join()  # its sentinel closes as it exits: reap it for its status
        status = first.exitcode or 0
        if stopping and status == -signal.SIGTERM:
            status = 0  # stopped by the forwarded signal before it could handle it: as asked
        if not stopping:
            # /quitquitquit reached it, or it failed: the others stop now, without the delay.
            log.info("worker %s ended (status %s): stopping the others", first.pid, status)
            stopping = True
            signal_all(signal.SIGUSR1)
        deadline = (
            time.monotonic()
            + config.ops.shutdown_delay
            + config.ops.shutdown_grace
            + EXTRA_STOP_SECONDS
        )
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                proc.kill()
                proc.join()
        return status if status >= 0 else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)
