"""pgBackRest end to end through the HTTPS listener (issue 19): Debian's ``postgresql`` and
``pgbackrest`` (``make system-deps``), one small throwaway PostgreSQL cluster run as the
``postgres`` user, WAL archived through the proxy, against the dev stack (moto, OpenBao). The
proxy gets only ``S3PROXY_TLS_LISTEN`` and ``S3PROXY_TLS_CA_OUT``; pgBackRest only the settings
the README shows. stanza-create, check, a full and an incremental backup, a restore into a new
directory that replays the archived WAL, the restored cluster started and its rows counted; the
repository's objects in the store are the proxy's ciphertext. With ``repo1-bundle=y`` (small
files bundled into larger objects, read back with ranged GETs) the backups take 2 s, not 10."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3proxy.core.format import MAGIC
from s3proxy.devstack import S3Server, Vault, clean_env, free_port
from tests.test_tls import TlsProxy, start_tls_proxy

TIMEOUT = 120  # seconds, for any one command
STANZA = "main"


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL is not installed: run `make system-deps`"
    return Path(found[-1]).parent


class Cluster:
    """Runs PostgreSQL's and pgBackRest's programs as ``postgres`` (when this is root: neither
    runs as root) in ``home``, with a clean environment."""

    def __init__(self, home: Path, config: Path) -> None:
        self.home = home
        self.config = config
        self.bin = _pg_bin()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.env = clean_env({"HOME": str(home), "PGHOST": str(home), "LC_ALL": "C"})
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "PGPORT"):
            self.env.pop(name, None)

    def run(self, *cmd: str) -> str:
        done = subprocess.run(
            [*self.as_user, *cmd],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.home,
        )
        assert done.returncode == 0, (
            f"{' '.join(cmd)} exited {done.returncode}\n{done.stdout[-3000:]}\n"
            f"{done.stderr[-3000:]}"
        )
        return done.stdout

    def pgbackrest(self, *args: str) -> str:
        pgbackrest = shutil.which("pgbackrest")
        assert pgbackrest, "pgBackRest is not installed: run `make system-deps`"
        return self.run(pgbackrest, f"--config={self.config}", f"--stanza={STANZA}", *args)

    def pg_ctl(self, data: Path, *args: str) -> str:
        return self.run(str(self.bin / "pg_ctl"), "-D", str(data), "-w", "-t", "60", *args)

    def sql(self, port: int, query: str) -> str:
        psql = shutil.which("psql") or str(self.bin / "psql")
        out = self.run(psql, "-X", "-A", "-t", "-p", str(port), "-U", "postgres", "-c", query)
        return out.strip()


@pytest.fixture
def home() -> Iterator[Path]:
    """A directory the postgres user owns (pytest's own are root's, mode 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="s3proxy-pgbackrest-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _configure(home: Path, proxy: TlsProxy, bucket: str, pg_port: int) -> Path:
    config = home / "pgbackrest.conf"
    config.write_text(
        f"""[global]
repo1-type=s3
repo1-s3-endpoint=localhost
repo1-storage-port={proxy.port}
repo1-storage-ca-file={proxy.ca}
repo1-s3-uri-style=path
repo1-s3-bucket={bucket}
repo1-s3-region=us-east-1
repo1-s3-key=AKIAWORKLOAD
repo1-s3-key-secret=workload-secret
repo1-path=/pgbackrest
lock-path={home}/lock
log-path={home}/log
spool-path={home}/spool
log-level-console=warn
log-level-file=off
start-fast=y
compress-level=1
repo1-bundle=y
archive-timeout=30

[{STANZA}]
pg1-path={home}/data
pg1-socket-path={home}
pg1-port={pg_port}
"""
    )
    config.chmod(0o644)
    return config


def _server_options(cluster: Cluster, port: int) -> str:
    options = {
        "port": port,
        "listen_addresses": "''",
        "unix_socket_directories": f"'{cluster.home}'",
        "fsync": "off",
        "shared_buffers": "16MB",
        "max_wal_size": "64MB",
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": (
            f"'pgbackrest --config={cluster.config} --stanza={STANZA} archive-push %p'"
        ),
    }
    return " ".join(f"-c {k}={v}" for k, v in options.items())


def _wait_promoted(cluster: Cluster, port: int) -> None:
    deadline = time.monotonic() + 60
    while cluster.sql(port, "SELECT pg_is_in_recovery()") != "f":
        assert time.monotonic() < deadline, "the restored cluster did not finish recovery"
        time.sleep(0.2)


def test_pgbackrest_backs_up_and_restores_through_the_tls_listener(
    workdir: Path, vault: Vault, s3: S3Server, raw: Any, bucket: str, home: Path
) -> None:
    # The proxy writes its CA where the postgres user reads it.
    proxy = start_tls_proxy(workdir, vault, s3, {"S3PROXY_TLS_CA_OUT": str(home / "ca.pem")})
    pg_port, restored_port = free_port(), free_port()
    cluster = Cluster(home, _configure(home, proxy, bucket, pg_port))
    data, restored = home / "data", home / "restored"
    running: list[Path] = []
    try:
        cluster.run(str(cluster.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        options = _server_options(cluster, pg_port)
        cluster.pg_ctl(data, "-l", str(home / "pg.log"), "-o", options, "start")
        running.append(data)
        cluster.sql(pg_port, "CREATE TABLE t AS SELECT g AS n FROM generate_series(1, 1000) g")
        cluster.pgbackrest("stanza-create")
        cluster.pgbackrest("check")  # a WAL segment pushed through the proxy and found again
        cluster.pgbackrest("backup", "--type=full")
        cluster.sql(pg_port, "INSERT INTO t SELECT g FROM generate_series(1001, 1500) g")
        cluster.pgbackrest("backup", "--type=incr")
        # Rows only the archived WAL holds: the restore must fetch and replay it.
        cluster.sql(pg_port, "INSERT INTO t SELECT g FROM generate_series(1501, 1750) g")
        cluster.pgbackrest("check")  # switches WAL and waits until it is archived
        info = cluster.pgbackrest("info")
        assert "full backup" in info and "incr backup" in info, info
        cluster.pg_ctl(data, "stop", "-m", "fast")
        running.remove(data)

        restored.mkdir(mode=0o700)
        if os.geteuid() == 0:
            shutil.chown(restored, "postgres", "postgres")
        cluster.pgbackrest("restore", f"--pg1-path={restored}")
        options = _server_options(cluster, restored_port).replace(
            "-c archive_mode=on", "-c archive_mode=off"
        )
        cluster.pg_ctl(restored, "-l", str(home / "restored.log"), "-o", options, "start")
        running.append(restored)
        _wait_promoted(cluster, restored_port)
        assert cluster.sql(restored_port, "SELECT count(*), sum(n) FROM t") == "1750|1532125"
    finally:
        for directory in running:
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                cluster.pg_ctl(directory, "stop", "-m", "immediate")
        proxy.proxy.stop()
    _assert_ciphertext(raw, bucket)
    log = proxy.proxy.log_text()
    assert "archive/main/" in log and "backup/main/" in log  # pgBackRest's requests came in


def _assert_ciphertext(raw: Any, bucket: str) -> None:
    """Every object pgBackRest wrote is a proxy stream; none shows its plaintext."""
    pages = raw.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="pgbackrest/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert any("/archive/main/" in k for k in keys) and any("/backup/main/" in k for k in keys)
    for key in keys:
        stored = raw.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert stored.startswith(MAGIC), key
        # backup.info and archive.info are INI text; manifests name the cluster's files.
        for plain in (b"[backrest]", b"backrest-checksum", b"pg_control", b"PG_VERSION"):
            assert plain not in stored, (key, plain)
