"""The HTTPS listener (S3PROXY_TLS_LISTEN) as workloads meet it: real ``s3proxy serve`` processes
with two workers, real boto3, AWS CLI and rclone trusting the CA the proxy wrote (and refusing
the proxy without it), certificate files rotated under a running proxy, TLS versions, and the
settings that do not go together."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config as BotoConfig
from cryptography import x509

from s3proxy.config import ConfigError, load
from s3proxy.core import certs
from s3proxy.devstack import Exited, S3Server, Vault, clean_env, free_port, wait_for
from tests.conftest import ProxyProcess, aws_cli, start_proxy

WORKLOAD_KEYS = {"aws_access_key_id": "AKIAWORKLOAD", "aws_secret_access_key": "workload-secret"}
BASE = {"S3PROXY_VAULT_TRANSIT_KEY": "k", "VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_TOKEN": "t"}


class TlsProxy:
    def __init__(self, proxy: ProxyProcess, port: int, ca: Path) -> None:
        self.proxy = proxy
        self.port = port
        self.ca = ca

    @property
    def endpoint(self) -> str:
        return f"https://localhost:{self.port}"

    def client(self, verify: str | bool, **config: Any) -> Any:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            verify=verify,
            config=BotoConfig(retries={"max_attempts": 1}, **config),
            **WORKLOAD_KEYS,
        )


def wait_tls(proxy: ProxyProcess, port: int, workers: int) -> None:
    """Until every worker listens (before that, the first takes every connection)."""

    def listening() -> bool:
        if proxy.proc.poll() is not None:
            raise Exited(proxy.log_text())
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return proxy.log_text().count(" listening on ") >= workers

    wait_for(listening, "the HTTPS listener")


def start_tls_proxy(workdir: Path, vault: Vault, s3: S3Server, extra: dict[str, str]) -> TlsProxy:
    port = free_port()
    ca = workdir / f"ca-{port}.pem"
    settings = {"S3PROXY_TLS_LISTEN": f"127.0.0.1:{port}", "S3PROXY_WORKERS": "2", **extra}
    if "S3PROXY_TLS_CERT_FILE" not in extra:
        settings.setdefault("S3PROXY_TLS_CA_OUT", str(ca))
        ca = Path(settings["S3PROXY_TLS_CA_OUT"])
    proxy = start_proxy(workdir, vault, s3, settings)
    try:
        wait_tls(proxy, port, int(settings["S3PROXY_WORKERS"]))
    except Exception:
        proxy.stop()
        raise
    return TlsProxy(proxy, port, ca)


@pytest.fixture(scope="module")
def tls_proxy(workdir: Path, vault: Vault, s3: S3Server) -> Iterator[TlsProxy]:
    """Only S3PROXY_TLS_LISTEN and S3PROXY_TLS_CA_OUT set (two workers)."""
    found = start_tls_proxy(workdir, vault, s3, {})
    yield found
    found.proxy.stop()


def handshake(port: int, cafile: Path | str, host: str = "localhost", **options: Any) -> str:
    """The TLS version agreed, verifying the server as ``host``."""
    context = ssl.create_default_context(cafile=str(cafile))
    if options.pop("any_cipher", False):
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # this client would speak TLS 1.0 and 1.1
    for name, value in options.items():
        setattr(context, name, value)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=host) as wrapped,
    ):
        return str(wrapped.version())


def test_boto3_trusts_the_written_ca_and_refuses_the_proxy_without_it(
    tls_proxy: TlsProxy, bucket: str, raw: Any
) -> None:
    assert tls_proxy.ca.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert tls_proxy.ca.stat().st_mode & 0o777 == 0o644
    client = tls_proxy.client(str(tls_proxy.ca))
    body = os.urandom(100_000)
    # Over https botocore sends aws-chunked bodies with a trailing checksum.
    client.put_object(Bucket=bucket, Key="k", Body=body)
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == body
    got = client.get_object(Bucket=bucket, Key="k", Range="bytes=10-99")["Body"].read()
    assert got == body[10:100]
    stored = raw.get_object(Bucket=bucket, Key="k")["Body"].read()
    assert body not in stored and body[:64] not in stored
    with pytest.raises(botocore.exceptions.SSLError):
        tls_proxy.client(True).get_object(Bucket=bucket, Key="k")


def test_multipart_upload_and_download_over_https(tls_proxy: TlsProxy, bucket: str) -> None:
    from boto3.s3.transfer import TransferConfig

    client = tls_proxy.client(str(tls_proxy.ca))
    body = os.urandom(11 * 1024 * 1024)
    config = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 2**20)
    import io

    client.upload_fileobj(io.BytesIO(body), bucket, "mp", Config=config)
    out = io.BytesIO()
    client.download_fileobj(bucket, "mp", out, Config=config)
    assert out.getvalue() == body


def _cli_env(endpoint: str, ca: str | None) -> dict[str, str]:
    env = clean_env(
        {
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_ACCESS_KEY_ID": "AKIAWORKLOAD",
            "AWS_SECRET_ACCESS_KEY": "workload-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
    )
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        env.pop(name, None)
    if ca:
        env["AWS_CA_BUNDLE"] = ca
    return env


def test_the_ca_bundle_serves_the_proxy_and_the_rest_of_the_world(tmp_path: Path) -> None:
    """S3PROXY_TLS_CA_BUNDLE_OUT: the CA, then the bundle the proxy's own OpenSSL trusts."""
    from s3proxy.server.tls import prepare, system_cas

    out = {"S3PROXY_TLS_CA_OUT": "ca.pem", "S3PROXY_TLS_CA_BUNDLE_OUT": "bundle.pem"}
    settings = {k: str(tmp_path / v) for k, v in out.items()}
    config = prepare(load({**BASE, "S3PROXY_TLS_LISTEN": "127.0.0.1:8443", **settings}))
    assert config.tls.generated is not None
    bundle = (tmp_path / "bundle.pem").read_bytes()
    assert bundle == config.tls.generated.ca_pem + b"\n" + system_cas()
    assert (tmp_path / "ca.pem").read_bytes() == config.tls.generated.ca_pem
    assert (tmp_path / "bundle.pem").stat().st_mode & 0o777 == 0o644


def test_the_aws_cli_with_aws_ca_bundle(tls_proxy: TlsProxy, bucket: str, tmp_path: Path) -> None:
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    src.write_bytes(os.urandom(300_000))
    env = _cli_env(tls_proxy.endpoint, str(tls_proxy.ca))
    for args in (["cp", str(src), f"s3://{bucket}/cli"], ["cp", f"s3://{bucket}/cli", str(dst)]):
        done = subprocess.run(
            [aws_cli(), "s3", *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    assert dst.read_bytes() == src.read_bytes()
    refused = subprocess.run(
        [aws_cli(), "s3", "ls", f"s3://{bucket}/"],
        env=_cli_env(tls_proxy.endpoint, None),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr, refused.stderr


def _rclone(
    tls_proxy: TlsProxy, home: Path, *args: str, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    found = shutil.which("rclone")
    assert found, "rclone is not installed: run `make system-deps`"
    home.mkdir(exist_ok=True)
    (home / "rclone.conf").write_text("")
    remote = {
        "TYPE": "s3",
        "PROVIDER": "Other",
        "ENDPOINT": tls_proxy.endpoint,
        "ACCESS_KEY_ID": "AKIAWORKLOAD",
        "SECRET_ACCESS_KEY": "workload-secret",
        "REGION": "us-east-1",
    }
    env = clean_env(
        {
            "HOME": str(home),
            "RCLONE_CONFIG": str(home / "rclone.conf"),
            **{f"RCLONE_CONFIG_TARGET_{k}": v for k, v in remote.items()},
        }
    )
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "https_proxy"):
        env.pop(name, None)
    env.update(env_extra or {})
    return subprocess.run(
        [found, "--retries", "1", "--low-level-retries", "1", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_rclone_with_its_ca_cert_option(tls_proxy: TlsProxy, bucket: str, tmp_path: Path) -> None:
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    src.write_bytes(os.urandom(200_000))
    home = tmp_path / "home"
    ca = ["--ca-cert", str(tls_proxy.ca)]
    up = _rclone(tls_proxy, home, *ca, "copyto", str(src), f"target:{bucket}/rc")
    assert up.returncode == 0, up.stderr
    down = _rclone(tls_proxy, home, *ca, "copyto", f"target:{bucket}/rc", str(dst))
    assert down.returncode == 0, down.stderr
    assert dst.read_bytes() == src.read_bytes()
    # rclone fails with AWS_CA_BUNDLE set (as the webhook's tls annotation sets it); a container
    # that sets it empty itself (the webhook then leaves it) runs rclone with --ca-cert.
    bundle = {"AWS_CA_BUNDLE": str(tls_proxy.ca)}
    failed = _rclone(tls_proxy, home, *ca, "lsf", f"target:{bucket}", env_extra=bundle)
    assert failed.returncode != 0 and "LoadCustomCABundleError" in failed.stderr, failed.stderr
    empty = {"AWS_CA_BUNDLE": ""}
    listed = _rclone(tls_proxy, home, *ca, "lsf", f"target:{bucket}", env_extra=empty)
    assert listed.returncode == 0 and "rc" in listed.stdout.split(), listed.stderr
    refused = _rclone(tls_proxy, home, "lsf", f"target:{bucket}")
    assert refused.returncode != 0
    assert "certificate signed by unknown authority" in refused.stderr, refused.stderr


def test_every_worker_serves_the_certificate_of_the_written_ca(tls_proxy: TlsProxy) -> None:
    """Two workers share the port: twenty new connections land on both, and all verify."""
    for _ in range(20):
        handshake(tls_proxy.port, tls_proxy.ca)


def test_the_certificate_names_localhost_and_127_0_0_1(tls_proxy: TlsProxy) -> None:
    assert handshake(tls_proxy.port, tls_proxy.ca, "localhost")
    assert handshake(tls_proxy.port, tls_proxy.ca, "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tls_proxy.port, tls_proxy.ca, "example.com")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_only_tls_1_2_and_later(tls_proxy: TlsProxy) -> None:
    assert handshake(tls_proxy.port, tls_proxy.ca) == "TLSv1.3"
    tls12 = {"maximum_version": ssl.TLSVersion.TLSv1_2}
    assert handshake(tls_proxy.port, tls_proxy.ca, **tls12) == "TLSv1.2"
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        old = {"minimum_version": version, "maximum_version": version, "any_cipher": True}
        with pytest.raises(ssl.SSLError):
            handshake(tls_proxy.port, tls_proxy.ca, **old)


def test_the_plain_listener_still_serves(tls_proxy: TlsProxy, bucket: str) -> None:
    tls_proxy.client(str(tls_proxy.ca)).put_object(Bucket=bucket, Key="both", Body=b"x")
    plain = tls_proxy.proxy.client()
    assert plain.get_object(Bucket=bucket, Key="both")["Body"].read() == b"x"


def _write_pair(directory: Path) -> Path:
    """A fresh CA and server certificate: the pair in ``directory``, the CA returned."""
    made = certs.generate()
    (directory / "tls.crt").write_bytes(made.cert_pem)
    (directory / "tls.key").write_bytes(made.key_pem)
    ca = directory / f"ca-{time.monotonic_ns()}.pem"
    ca.write_bytes(made.ca_pem)
    return ca


def test_rotated_certificate_files_are_served_without_a_restart(
    workdir: Path, vault: Vault, s3: S3Server, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    first_ca = _write_pair(secret)
    extra = {
        "S3PROXY_TLS_CERT_FILE": str(secret / "tls.crt"),
        "S3PROXY_TLS_KEY_FILE": str(secret / "tls.key"),
    }
    served = start_tls_proxy(workdir, vault, s3, extra)
    try:
        assert handshake(served.port, first_ca)
        # Half a rotation (a new certificate, the old key) is not taken: the old pair stays.
        other = certs.generate()
        (secret / "tls.crt").write_bytes(other.cert_pem)

        def both_workers_refused_it() -> bool:
            return served.proxy.log_text().count("cannot reload the TLS certificate") >= 2

        wait_for(both_workers_refused_it, "both workers' checks of the half pair", timeout=30)
        for _ in range(4):
            assert handshake(served.port, first_ca)
        second_ca = _write_pair(secret)

        def rotated() -> bool:  # in every worker (each checks the files on its own)
            try:
                return all(handshake(served.port, second_ca) for _ in range(8))
            except ssl.SSLCertVerificationError:
                return False

        wait_for(rotated, "the rotated certificate", timeout=30)
        for _ in range(4):
            with pytest.raises(ssl.SSLCertVerificationError):
                handshake(served.port, first_ca)
    finally:
        served.proxy.stop()


def test_the_generated_ca_may_vouch_for_loopback_names_only() -> None:
    now = datetime.datetime.now(datetime.UTC)
    made = certs.generate(["10.0.0.7"], now=now)
    ca = x509.load_pem_x509_certificate(made.ca_pem)
    leaf = x509.load_pem_x509_certificate(made.cert_pem)
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    permitted = set(constraints.value.permitted_subtrees or [])
    assert permitted == {
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")),
        x509.IPAddress(ipaddress.ip_network("::1/128")),
        x509.IPAddress(ipaddress.ip_network("10.0.0.7/32")),
    }
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(a) for a in sans.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1",
        "::1",
        "10.0.0.7",
    }
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert leaf.issuer == ca.subject
    assert leaf.not_valid_after_utc - now <= datetime.timedelta(days=certs.SERVER_DAYS)
    assert b"PRIVATE KEY" not in made.ca_pem + made.cert_pem


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"S3PROXY_TLS_CA_OUT": "/tmp/ca.pem"}, "S3PROXY_TLS_CA_OUT needs S3PROXY_TLS_LISTEN"),
        (
            {"S3PROXY_TLS_CA_BUNDLE_OUT": "/tmp/b.pem"},
            "S3PROXY_TLS_CA_BUNDLE_OUT needs S3PROXY_TLS_LISTEN",
        ),
        (
            {
                "S3PROXY_TLS_LISTEN": "127.0.0.1:8443",
                "S3PROXY_TLS_CERT_FILE": "/etc/hostname",
                "S3PROXY_TLS_KEY_FILE": "/etc/hostname",
                "S3PROXY_TLS_CA_BUNDLE_OUT": "/tmp/b.pem",
            },
            "S3PROXY_TLS_CA_BUNDLE_OUT is for the certificate the proxy makes",
        ),
        (
            {"S3PROXY_TLS_LISTEN": "127.0.0.1:8443", "S3PROXY_TLS_CERT_FILE": "/etc/hostname"},
            "go together",
        ),
        ({"S3PROXY_TLS_LISTEN": "0.0.0.0:8443"}, "not a loopback address"),
        ({"S3PROXY_TLS_LISTEN": "127.0.0.1:8190"}, "uses the port of another listener"),
        ({"S3PROXY_TLS_LISTEN": "127.0.0.1:8191"}, "uses the port of another listener"),
        ({"S3PROXY_TLS_LISTEN": "localhost"}, "must be HOST:PORT"),
        (
            {
                "S3PROXY_TLS_LISTEN": "127.0.0.1:8443",
                "S3PROXY_TLS_CERT_FILE": "/etc/hostname",
                "S3PROXY_TLS_KEY_FILE": "/etc/hostname",
                "S3PROXY_TLS_CA_OUT": "/tmp/ca.pem",
            },
            "S3PROXY_TLS_CA_OUT is for the certificate the proxy makes",
        ),
        (
            {"S3PROXY_TLS_LISTEN": "127.0.0.1:8443", "S3PROXY_TLS_CA_OUT": "/nonexistent/ca.pem"},
            "no directory",
        ),
    ],
)
def test_settings_that_do_not_go_together(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load({**BASE, **settings})


def test_tls_listen_alone_is_loopback_https() -> None:
    config = load({**BASE, "S3PROXY_TLS_LISTEN": "127.0.0.1:8443"})
    assert config.tls.listen == ("127.0.0.1", 8443)
    assert load(BASE).tls.listen is None


def test_an_unusable_certificate_pair_stops_the_start(
    workdir: Path, vault: Vault, s3: S3Server, tmp_path: Path
) -> None:
    made = certs.generate()
    other = certs.generate()
    (tmp_path / "tls.crt").write_bytes(made.cert_pem)
    (tmp_path / "tls.key").write_bytes(other.key_pem)  # not the certificate's key
    with pytest.raises(RuntimeError, match="cannot load the pair"):
        start_tls_proxy(
            workdir,
            vault,
            s3,
            {
                "S3PROXY_TLS_CERT_FILE": str(tmp_path / "tls.crt"),
                "S3PROXY_TLS_KEY_FILE": str(tmp_path / "tls.key"),
            },
        )


def test_make_dev_prints_the_https_endpoint_and_its_ca(tmp_path: Path) -> None:
    """``s3proxy dev`` (``make dev``) serves HTTPS too; its printed example works as printed."""
    import signal
    import sys

    port, tls_port = free_port(), str(free_port())
    out_path = tmp_path / "dev.out"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "s3proxy", "dev", "--port", str(port), "--tls-port", tls_port],
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for(lambda: b"listening on" in out_path.read_bytes(), "s3proxy dev", timeout=60)
        printed = out_path.read_text()
        found = re.search(
            rf"AWS_ENDPOINT_URL_S3=https://localhost:{tls_port} AWS_CA_BUNDLE=(\S+) ", printed
        )
        assert found, printed
        assert f"repo1-storage-port={tls_port}" in printed
        assert f"https://localhost:{tls_port} (its CA: {found.group(1)})" in printed
        env = _cli_env(f"https://localhost:{tls_port}", found.group(1))
        (tmp_path / "hello.txt").write_text("hello over TLS\n")
        for args in (["hello.txt", "s3://demo/hello.txt"], ["s3://demo/hello.txt", "-"]):
            done = subprocess.run(
                [aws_cli(), "s3", "cp", *args], cwd=tmp_path, env=env, capture_output=True
            )
            assert done.returncode == 0, done.stderr.decode()
        assert done.stdout == b"hello over TLS\n"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def test_prepare_makes_one_certificate_and_writes_its_ca_whole(tmp_path: Path) -> None:
    from s3proxy.server.tls import prepare

    keys = tmp_path / "keys"
    keys.write_text("AKIAWORKLOAD workload-secret\n")
    ca_out = tmp_path / "ca.pem"
    ca_out.symlink_to(tmp_path / "elsewhere.pem")  # replaced, not followed
    remote = {
        "S3PROXY_LISTEN": "10.0.0.7:8190",
        "S3PROXY_ALLOW_REMOTE_CLIENTS": "true",
        "S3PROXY_CLIENT_AUTH": "sigv4",
        "S3PROXY_CLIENT_CREDENTIALS_FILE": str(keys),
        "S3PROXY_TLS_LISTEN": "10.0.0.7:8443",
        "S3PROXY_TLS_CA_OUT": str(ca_out),
    }
    config = prepare(load({**BASE, **remote}))
    made = config.tls.generated
    assert made is not None and prepare(config) is config  # once, also for the workers
    assert not ca_out.is_symlink() and not (tmp_path / "elsewhere.pem").exists()
    assert ca_out.read_bytes() == made.ca_pem and ca_out.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.pem", "keys"]  # no scratch left
    leaf = x509.load_pem_x509_certificate(made.cert_pem)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.0.0.7" in {str(a) for a in sans.get_values_for_type(x509.IPAddress)}
    wildcard = prepare(load({**BASE, **remote, "S3PROXY_TLS_LISTEN": "0.0.0.0:8443"}))
    assert wildcard.tls.generated is not None
    leaf = x509.load_pem_x509_certificate(wildcard.tls.generated.cert_pem)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(a) for a in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}


def _rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def test_idle_tls_connections_cost_little_memory(workdir: Path, vault: Vault, s3: S3Server) -> None:
    """asyncio gives every accepted TLS connection a 256 KiB read buffer before it sends a byte
    (about 0.3 MiB each in all); the proxy's are 64 KiB: 300 connections that never say hello
    add about 33 MiB, not 90."""
    served = start_tls_proxy(workdir, vault, s3, {"S3PROXY_WORKERS": "1"})
    sockets: list[socket.socket] = []
    try:
        handshake(served.port, served.ca)
        before = _rss_mib(served.proxy.proc.pid)
        for _ in range(300):
            sockets.append(socket.create_connection(("127.0.0.1", served.port), timeout=5))
        # Accepted once the handshake of a new connection completes after them.
        assert handshake(served.port, served.ca)
        time.sleep(0.5)
        grown = _rss_mib(served.proxy.proc.pid) - before
        assert grown < 60, f"{grown:.0f} MiB for 300 idle TLS connections"
        # and they are closed once the handshake timeout (10 s, not asyncio's 60) is over
        sockets[-1].settimeout(20)
        started = time.monotonic()
        assert sockets[-1].recv(1) == b""
        assert time.monotonic() - started < 12
    finally:
        for sock in sockets:
            sock.close()
        served.proxy.stop()


def test_https_on_both_sides(workdir: Path, vault: Vault, tmp_path: Path) -> None:
    """The TLS listener in front of an https upstream: the proxy's accepted TLS connections
    get the smaller read buffer, its upstream connections (client side) keep asyncio's."""
    from s3proxy.devstack import start_s3

    made = certs.generate()
    files = [tmp_path / n for n in ("up.crt", "up.key", "up-ca.pem")]
    for path, data in zip(files, (made.cert_pem, made.key_pem, made.ca_pem), strict=True):
        path.write_bytes(data)
    secure = start_s3(workdir, tls=(files[0], files[1], files[2]))
    try:
        secure.client().create_bucket(Bucket="both-sides")
        served = start_tls_proxy(workdir, vault, secure, {"S3PROXY_S3_CA_BUNDLE": str(files[2])})
        try:
            client = served.client(str(served.ca))
            body = os.urandom(3 * 1024 * 1024)
            client.put_object(Bucket="both-sides", Key="k", Body=body)
            assert client.get_object(Bucket="both-sides", Key="k")["Body"].read() == body
            stored = secure.client().get_object(Bucket="both-sides", Key="k")["Body"].read()
            assert body[:4096] not in stored
        finally:
            served.proxy.stop()
    finally:
        secure.stop()
