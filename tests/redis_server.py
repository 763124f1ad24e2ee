"""A throwaway ``redis-server`` on 127.0.0.1 for tests (Debian package redis-server; ``make
system-deps``): no persistence, optionally with a password and with TLS only (certificates from
s3proxy.core.certs, a CA made for the test)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from s3proxy.core import certs
from s3proxy.devstack import Exited, free_port, wait_for


@dataclass
class RedisServer:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    password: str | None = None
    ca_file: Path | None = None  # with TLS: the CA that signed the server's certificate

    @property
    def url(self) -> str:
        """Without the password (tests give it as they test)."""
        return f"{'rediss' if self.ca_file else 'redis'}://127.0.0.1:{self.port}"

    def client(self) -> Any:
        """A synchronous client, to look at the server directly."""
        options: dict[str, Any] = {"password": self.password, "socket_timeout": 5}
        if self.ca_file:
            options["ssl_ca_certs"] = str(self.ca_file)
        return redis.Redis.from_url(self.url, **options)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it accepts connections but answers nothing."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_redis(workdir: Path, *, password: str | None = None, tls: bool = False) -> RedisServer:
    """Start ``redis-server`` in ``workdir`` and wait until it answers PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (make system-deps)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [binary, "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "", "--appendonly"]
    args += ["no", "--daemonize", "no"]
    if password is not None:
        args += ["--requirepass", password]
    ca_file = None
    if tls:
        ca_file = _certificates(workdir)
        args += ["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no"]
        args += ["--tls-cert-file", str(workdir / "cert.pem"), "--tls-key-file"]
        args += [str(workdir / "key.pem"), "--tls-ca-cert-file", str(ca_file)]
    else:
        args += ["--port", str(port)]
    log_path = workdir / f"redis-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    server = RedisServer(proc, port, log_path, password, ca_file)
    client = server.client()

    def answers() -> bool:
        if proc.poll() is not None:
            raise Exited(f"redis-server exited: {log_path.read_text(errors='replace')[-500:]}")
        return bool(client.ping())

    try:
        wait_for(answers, "redis-server", timeout=15)
    except BaseException:
        server.stop()
        raise
    finally:
        client.close()
    return server


def _certificates(workdir: Path) -> Path:
    generated = certs.generate()
    (workdir / "cert.pem").write_bytes(generated.cert_pem)
    key = workdir / "key.pem"
    key.write_bytes(generated.key_pem)
    os.chmod(key, 0o600)
    ca = workdir / "ca.pem"
    ca.write_bytes(generated.ca_pem)
    return ca
