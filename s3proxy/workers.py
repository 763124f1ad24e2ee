"""``s3proxy serve`` with several worker processes: each runs the whole proxy (its own event loop,
Vault login, caches and upstream connections) on the same ports, which the kernel shares out
(``SO_REUSEPORT``). This process only supervises: it forwards SIGTERM/SIGINT, and when one worker
ends (``/quitquitquit`` reaches one worker; a crash) it stops the others and exits with that
worker's status. Metrics are summed across workers through prometheus-client's multi-process
directory. docs/performance.md, Workers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, MutableSequence
from types import FrameType

from s3proxy.config import Config
from s3proxy.server.peers import Peers
from s3proxy.server.tls import prepare
from s3proxy.telemetry.logs import setup_logging

log = logging.getLogger("s3proxy")
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
EXTRA_STOP_SECONDS = 10.0  # beyond a worker's own delay and grace, before it is killed


def serve_one(config: Config, reuse_port: bool = False, peers: Peers | None = None) -> int:
    """The proxy in this process, until it is stopped."""
    # Imported here, not above: a supervisor of workers never serves, and its start is on the
    # way to theirs (docs/performance.md, Start). Nothing is collected while the server's
    # modules load (the objects they make live as long as the process; the collections cost
    # about a fifth of the imports' time); settle_collector turns the collector on again.
    gc.disable()
    from s3proxy.serve import run_proxy, settle_collector

    settle_collector()
    try:
        asyncio.run(run_proxy(config, reuse_port=reuse_port, peers=peers))
    except OSError as exc:
        print(f"s3proxy: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


def _worker(config: Config, index: int, slots: MutableSequence[int]) -> None:
    # Forked from the supervisor: its signal handler is not this process's.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
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
    if config.ops.workers <= 1:
        return serve_one(config)
    with _metrics_dir():
        supervisor = _Supervisor(config)
        with _signals_handled_by(supervisor.stop):
            return supervisor.run()


@contextlib.contextmanager
def _metrics_dir() -> Iterator[None]:
    """The workers' shared metrics directory: made (and removed after) unless one is set."""
    own_dir = None
    if not os.environ.get(METRICS_DIR):
        own_dir = tempfile.mkdtemp(prefix="s3proxy-metrics-")
        os.environ[METRICS_DIR] = own_dir  # inherited by the workers, read as they start
    try:
        yield
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


@contextlib.contextmanager
def _signals_handled_by(
    handler: Callable[[int, FrameType | None], None],
) -> Iterator[None]:
    """SIGTERM and SIGINT go to ``handler`` until the block ends; then the previous handlers."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _Supervisor:
    """The worker processes: started together; when one ends, the others are stopped."""

    def __init__(self, config: Config) -> None:
        self._config = config
        workers = config.ops.workers
        # Forked, not spawned: a worker starts from what the supervisor imported (a spawned
        # one started a new interpreter and imported it all again: about 0.1 s of every
        # start; docs/performance.md, Start). The supervisor imports neither the server nor
        # prometheus-client (which reads the metrics directory's variable as it is imported),
        # starts no thread and no event loop before it forks.
        context = multiprocessing.get_context("fork")
        slots = context.RawArray("B", workers)  # each worker's probe verdicts (server/peers.py)
        self._procs = [
            context.Process(target=_worker, args=(config, i, slots), name=f"s3proxy-worker-{i}")
            for i in range(workers)
        ]
        self._stopping = False

    def stop(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = True
        self._signal_all(signal.SIGTERM)

    def run(self) -> int:
        for proc in self._procs:
            proc.start()
        log.info(
            "s3proxy supervising %d workers: %s",
            self._config.ops.workers,
            [p.pid for p in self._procs],
        )
        status = self._first_exit()
        self._join_all()
        return status if status >= 0 else 1

    def _signal_all(self, signum: int) -> None:
        for proc in self._procs:
            if proc.pid is not None and proc.exitcode is None:
                os.kill(proc.pid, signum)

    def _first_exit(self) -> int:
        """The exit status of the first worker to end; the others are told to stop."""
        ready = multiprocessing.connection.wait([p.sentinel for p in self._procs])
        first = next(p for p in self._procs if p.sentinel in ready)
        first.join()  # its sentinel closes as it exits: reap it for its status
        status = first.exitcode or 0
        if self._stopping and status == -signal.SIGTERM:
            status = 0  # stopped by the forwarded signal before it could handle it: as asked
        if not self._stopping:
            # /quitquitquit reached it, or it failed: the others stop now, without the delay.
            log.info("worker %s ended (status %s): stopping the others", first.pid, status)
            self._stopping = True
            self._signal_all(signal.SIGUSR1)
        return status

    def _join_all(self) -> None:
        """Wait for every worker for its delay and grace (and some more); then kill it."""
        ops = self._config.ops
        deadline = time.monotonic() + ops.shutdown_delay + ops.shutdown_grace + EXTRA_STOP_SECONDS
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                proc.kill()
                proc.join()
