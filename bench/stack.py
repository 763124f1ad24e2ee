"""The servers the benchmark measures through, all on 127.0.0.1: the in-memory S3 upstream
(bench/upstream/main.go, built with Go), nginx as a plain reverse proxy in front of it, an
OpenBao dev server with a transit key and a file audit device (to count Vault calls), and
s3proxy started as the test suite starts it (devstack.start_proxy_process)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from s3proxy.core.certs import generate
from s3proxy.devstack import (
    Process,
    S3Server,
    Vault,
    clean_env,
    free_port,
    proxy_env,
    start_proxy_process,
    start_vault,
    wait_for,
)

BENCH_DIR = Path(__file__).resolve().parent
UPSTREAM_SOURCE = BENCH_DIR / "upstream" / "main.go"
BUCKET = "bench"
UPSTREAM_KEY = "bench"  # the proxy's upstream credentials (the upstream checks none)

NGINX_CONF = """\
worker_processes auto;
daemon off;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream s3 {{
        server 127.0.0.1:{upstream};
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port};
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {dir}/../tls.crt;
        ssl_certificate_key {dir}/../tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        keepalive_requests 1000000;
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        location / {{ proxy_pass http://s3; }}
    }}
}}
"""

AUDIT_CONFIG = 'audit "file" "bench" {{ options {{ file_path = "{path}" }} }}\n'


def spawn(cmd: list[str], env: Mapping[str, str], log_path: Path) -> Process:
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            cmd, env=dict(env), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    return Process(proc, log_path)


def build_upstream(cache: Path) -> Path:
    """The upstream's binary, rebuilt when its source changed."""
    go = shutil.which("go")
    binary = cache / "bench-upstream"
    if binary.exists() and binary.stat().st_mtime >= UPSTREAM_SOURCE.stat().st_mtime:
        return binary
    if go is None:
        raise RuntimeError("go not found: `make bench` installs golang-go")
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [go, "build", "-o", str(binary), str(UPSTREAM_SOURCE)],
        check=True,
        timeout=300,
        env={**os.environ, "GO111MODULE": "off", "GOPATH": str(cache / "gopath")},
    )
    return binary


def http_status(port: int, method: str, path: str, body: bytes | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def wait_listening(process: Process, port: int, what: str) -> None:
    def answers() -> bool:
        if process.proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {process.log_text()[-2000:]}")
        return http_status(port, "GET", "/") > 0

    wait_for(answers, what, timeout=30)


class Stack:
    """Starts everything on enter, stops everything on exit (also on errors and Ctrl-C)."""

    def __init__(self, workdir: Path, cache: Path, proxy_extra: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.cache = cache
        self.proxy_extra = dict(proxy_extra)
        self._stack = contextlib.ExitStack()
        self.ports: dict[str, int] = {}
        self.pids: dict[str, int] = {}
        self.audit_log = workdir / "vault-audit.log"
        self.vault: Vault | None = None
        self.upstream: S3Server | None = None
        self.servers: dict[str, Process] = {}

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _keep(self, process: Process) -> Process:
        self._stack.callback(process.stop)
        return process

    def _write_certificate(self) -> None:
        """One certificate for the TLS listeners of nginx and s3proxy (ECDSA P-256)."""
        made = generate()
        (self.workdir / "tls.crt").write_bytes(made.cert_pem)
        (self.workdir / "tls.key").write_bytes(made.key_pem)
        self.ports["s3proxy-tls"] = free_port()
        self.proxy_extra |= {
            "S3PROXY_TLS_LISTEN": f"127.0.0.1:{self.ports['s3proxy-tls']}",
            "S3PROXY_TLS_CERT_FILE": str(self.workdir / "tls.crt"),
            "S3PROXY_TLS_KEY_FILE": str(self.workdir / "tls.key"),
        }

    def _start(self) -> None:
        binary = build_upstream(self.cache)
        self._write_certificate()
        port = free_port()
        env = clean_env({"GOGC": "25"})  # the stored objects are large: collect them early
        upstream = self._keep(
            spawn([str(binary), "-listen", f"127.0.0.1:{port}"], env, self.workdir / "up.log")
        )
        wait_listening(upstream, port, "bench upstream")
        self.ports["direct"], self.pids["upstream"] = port, upstream.proc.pid
        self.servers["upstream"] = upstream
        self.upstream = S3Server(
            upstream, f"http://127.0.0.1:{port}", UPSTREAM_KEY, UPSTREAM_KEY, "us-east-1"
        )
        nginx, nginx_port, nginx_tls = self.start_nginx("nginx")
        self.ports["nginx"], self.pids["nginx"] = nginx_port, nginx.proc.pid
        self.ports["nginx-tls"] = nginx_tls
        self.servers["nginx"] = nginx
        self.vault = start_vault(
            self.workdir, extra_config=AUDIT_CONFIG.format(path=self.audit_log)
        )
        self._stack.callback(self.vault.stop)
        self.servers["OpenBao"] = self.vault.process
        proxy, proxy_port = start_proxy_process(
            self.workdir, self.vault, self.upstream, self.proxy_extra
        )
        self._keep(proxy)
        self.ports["s3proxy"], self.pids["s3proxy"] = proxy_port, proxy.proc.pid
        self.servers["s3proxy"] = proxy

    def check_alive(self) -> None:
        """Raise, naming the server and the end of its log, if one of them has exited."""
        for name, process in self.servers.items():
            code = process.proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"{name} exited with {code} (log {process.log_path}):\n"
                    f"{process.log_text()[-3000:]}"
                )

    def start_nginx(self, name: str) -> tuple[Process, int, int]:
        """An nginx in front of the upstream, listening once this returns; its plain and TLS
        ports."""
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        port, tls_port = free_port(), free_port()
        prefix = self.workdir / name
        prefix.mkdir(exist_ok=True)
        user = "user root;" if os.geteuid() == 0 else ""
        conf = prefix / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                user=user, dir=prefix, upstream=self.ports["direct"], port=port, tls_port=tls_port
            )
        )
        cmd = [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
        process = self._keep(spawn(cmd, clean_env(), prefix / "stdout.log"))
        wait_listening(process, port, "nginx")
        return process, port, tls_port

    def url(self, path: str, tls: bool = False) -> str:
        """The base URL of a path; with ``tls`` its TLS listener (nginx and s3proxy only)."""
        if tls:
            return f"https://127.0.0.1:{self.ports[f'{path}-tls']}"
        return f"http://127.0.0.1:{self.ports[path]}"

    def upstream_requests(self) -> int:
        """Requests the upstream has served so far."""
        conn = http.client.HTTPConnection("127.0.0.1", self.ports["direct"], timeout=5)
        try:
            conn.request("GET", "/_bench/requests")
            return int(conn.getresponse().read())
        finally:
            conn.close()

    def vault_transit_calls(self) -> int:
        """Transit requests OpenBao has answered so far (from its audit log)."""
        if not self.audit_log.exists():
            return 0
        count = 0
        with self.audit_log.open() as log:
            for line in log:
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    path = entry.get("request", {}).get("path", "")
                    if entry.get("type") == "request" and path.startswith("transit/"):
                        count += 1
        return count

    def proxy_start_seconds(self, probe_path: str, timeout: float = 30.0) -> float:
        """Start a second s3proxy with the same settings; seconds from its start to the first
        200 answer to GET ``probe_path`` (an encrypted object: the key is unwrapped at Vault)."""
        assert self.vault is not None and self.upstream is not None
        port = free_port()
        extra = self.proxy_extra | {"S3PROXY_TLS_LISTEN": f"127.0.0.1:{free_port()}"}
        env = proxy_env(self.vault, self.upstream, port=port, extra=extra)
        return self._start_seconds(
            [sys.executable, "-m", "s3proxy", "serve"], env, port, probe_path, timeout
        )

    def nginx_start_seconds(self, probe_path: str, timeout: float = 30.0) -> float:
        started = time.monotonic()
        process, port, _ = self.start_nginx(f"nginx-start-{int(started * 1000)}")
        try:
            while http_status(port, "GET", probe_path) != 200:
                time.sleep(0.005)
            return time.monotonic() - started
        finally:
            process.stop()

    def _start_seconds(
        self, cmd: list[str], env: Mapping[str, str], port: int, path: str, timeout: float
    ) -> float:
        log_path = self.workdir / f"start-{port}.log"
        started = time.monotonic()
        process = spawn(cmd, env, log_path)
        try:
            while time.monotonic() - started < timeout:
                if process.proc.poll() is not None:
                    raise RuntimeError(f"the process exited: {process.log_text()[-2000:]}")
                with contextlib.suppress(OSError):
                    if http_status(port, "GET", path) == 200:
                        return time.monotonic() - started
                time.sleep(0.005)
            raise RuntimeError(f"no 200 for GET {path} within {timeout:.0f} s")
        finally:
            process.stop()
