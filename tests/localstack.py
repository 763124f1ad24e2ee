"""LocalStack's S3 as a test peer: unlike moto it verifies ``Content-MD5`` and
``x-amz-checksum-*`` values, in headers and in aws-chunked trailers, and refuses a mismatch with
``BadDigest`` (/work/shared/notes/facts.md §3).

It runs without Docker from its own virtualenv (``make localstack``; its pins stay out of the
project's ``.venv``), bound to 127.0.0.1 on a free port. A test module loads this plugin with
``pytest_plugins = ["tests.localstack"]``; the session fixture ``localstack`` starts it at the
first test that asks for it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3proxy.devstack import Process, S3Server, clean_env, free_port

ROOT = Path(__file__).resolve().parent.parent
# Where `make localstack` installs it (the Makefile's LOCALSTACK_VENV).
LOCALSTACK_PYTHON = ROOT / ".venv-localstack" / "bin" / "python"
# The first start loads the S3 provider lazily at the first request: ~6-9 s, later ~2 s.
START_TIMEOUT = 90.0


class LocalStack(S3Server):
    """A LocalStack S3; it accepts any keys. An :class:`S3Server`, so ``proxy_env`` and
    ``start_proxy`` put a proxy in front of it as they do for moto."""

    def stop(self) -> None:
        # Its hypercorn gateway may hang on SIGTERM: SIGKILL the process group it leads.
        proc = self.process.proc
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def start_localstack(workdir: Path) -> LocalStack:
    if not LOCALSTACK_PYTHON.exists():
        pytest.fail(f"LocalStack is not installed at {LOCALSTACK_PYTHON}: run `make localstack`")
    port = free_port()
    root = workdir / f"localstack-{port}"
    (root / "home").mkdir(parents=True)
    env = clean_env(
        {
            "OVERRIDE_IN_DOCKER": "0",
            "SERVICES": "s3",
            "DNS_ADDRESS": "0",
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "GATEWAY_SERVER": "hypercorn",  # the default (twisted) binds 0.0.0.0
            "PERSISTENCE": "0",
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "FILESYSTEM_ROOT": str(root),
            "HOME": str(root / "home"),  # its plugin cache, not the developer's ~/.cache
        }
    )
    env.pop("PYTHONPATH", None)
    log_path = workdir / f"localstack-{port}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(LOCALSTACK_PYTHON), "-m", "localstack.runtime.main"],
            env=env,
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = LocalStack(Process(proc, log_path), f"http://127.0.0.1:{port}", "test", "test")
    try:
        _wait_until_s3_answers(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_s3_answers(server: LocalStack) -> None:
    from botocore.config import Config

    client = server.client(
        config=Config(
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1},
            connect_timeout=1,
            read_timeout=30,
        )
    )
    deadline = time.monotonic() + START_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.proc.poll() is not None:
            raise RuntimeError(f"LocalStack exited:\n{server.process.log_text()[-3000:]}")
        try:
            client.list_buckets()  # loads the S3 provider: the first request is the slow one
            return
        except Exception as exc:
            last = exc
        time.sleep(0.2)
    raise RuntimeError(
        f"LocalStack's S3 did not answer within {START_TIMEOUT:.0f}s ({last!r}):\n"
        f"{server.process.log_text()[-3000:]}"
    )


@pytest.fixture(scope="session")
def localstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    started = time.monotonic()
    server = start_localstack(tmp_path_factory.mktemp("localstack"))
    print(f"LocalStack S3 at {server.endpoint} answered after {time.monotonic() - started:.1f}s")
    yield server
    server.stop()
