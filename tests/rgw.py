"""A real Ceph RADOS Gateway as a test peer: unlike moto and LocalStack it verifies SigV4,
payload hashes, aws-chunked chunk signatures and Content-MD5, and it refuses the trailer
payload (``STREAMING-UNSIGNED-PAYLOAD-TRAILER``) before Reef (/work/shared/notes/facts.md §7).

A throwaway single-node Ceph from Debian's packages (``make system-deps``): one monitor, one OSD
on ``memstore`` (data in RAM), no manager, ``auth = none``, radosgw's beast frontend on
127.0.0.1, all on free ports and in a temporary directory; stopped with SIGKILL by PID (SIGTERM
can hang for minutes, and everything is thrown away anyway). A test module loads this plugin
with ``pytest_plugins = ["tests.rgw"]``; the session fixture ``rgw`` starts it at the first test
that asks for it (about 2 to 6 s).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3proxy.devstack import Process, S3Server, clean_env, free_port

BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph-authtool")
START_TIMEOUT = 120.0
ACCESS_KEY = "AKRGW0000000000000000"
SECRET_KEY = "SKRGW000000000000000000000000000000000000"

_CONF = """[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
# radosgw (unlike the ceph CLI) insists on a 'secure' mon connection, impossible with auth=none
ms mon client mode = crc
run dir = {d}/run
pid file = {d}/run/$name.pid
admin socket = {d}/run/$name.asok
log file = {d}/log/$name.log
mon cluster log file = {d}/log/cluster.log
keyring = {d}/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 1
mon data avail crit = 0
# the default (1 s per map commit) makes radosgw's pool creation take ~9 s
paxos propose interval = 0.05
paxos min wait = 0.01
[mon]
mon data = {d}/data/mon.$id
[osd]
osd data = {d}/data/osd.$id
osd objectstore = memstore
memstore device bytes = 1073741824
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {d}/data/rgw
"""


class RGW(S3Server):
    """A running radosgw and the Ceph under it; an :class:`S3Server`, so ``proxy_env`` and
    ``start_proxy`` put a proxy in front of it as they do for moto."""

    directory: Path = Path()

    def stop(self) -> None:
        for name in ("client.rgw", "osd.0", "mon.a"):
            pid_file = self.directory / "run" / f"{name}.pid"
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if str(self.directory).encode() in cmdline:  # ours, not a reused PID
                    os.kill(pid, signal.SIGKILL)
        if self.process.proc.poll() is None:
            self.process.proc.kill()
        self.process.proc.wait(10)
        shutil.rmtree(self.directory / "data", ignore_errors=True)


def installed() -> bool:
    return all(shutil.which(b) for b in BINARIES)


def _run(cmd: list[str], log: Path, timeout: float = 60.0) -> str:
    with log.open("ab") as err:
        out = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=err, timeout=timeout, check=True, env=_env()
        )
    return out.stdout.decode()


def _env() -> dict[str, str]:
    return clean_env({"CEPH_ARGS": ""})


def _wait(check: object, what: str, d: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up in {START_TIMEOUT:.0f} s; logs in {d}/log")


def start_rgw(d: Path) -> RGW:
    """Ceph and radosgw in ``d`` (fresh), with one S3 user; returns once S3 answers."""
    if not installed():
        pytest.fail("Ceph is not installed: run `make system-deps` (ceph-mon ceph-osd radosgw)")
    for sub in ("data/mon.a", "data/osd.0", "data/rgw", "run", "log"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    mon_port, rgw_port = free_port(), free_port()
    conf = d / "ceph.conf"
    fsid = str(uuid.uuid4())
    conf.write_text(_CONF.format(fsid=fsid, mon_port=mon_port, rgw_port=rgw_port, d=d))
    log = d / "log" / "setup.log"
    c = ["-c", str(conf)]
    keyring = str(d / "keyring")
    _run(["ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", "mon.", "--cap", "mon",
          "allow *"], log)  # fmt: skip
    monmap = str(d / "data" / "monmap")
    _run(["monmaptool", "--create", "--fsid", fsid, "--addv", "a",
          f"[v2:127.0.0.1:{mon_port}]", monmap], log)  # fmt: skip
    _run(["ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", monmap, "--keyring",
          str(d / "keyring")], log)  # fmt: skip
    _run(["ceph-mon", *c, "-i", "a"], log)  # daemonizes
    osd_uuid = str(uuid.uuid4())
    osd_id = _run(["ceph", *c, "--connect-timeout", "30", "osd", "new", osd_uuid], log).strip()
    _run(["ceph-osd", *c, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid], log)
    _run(["ceph-osd", *c, "-i", osd_id], log)

    def osd_up() -> bool:
        dump = _run(["ceph", *c, "--connect-timeout", "5", "osd", "dump"], log, 15)
        return f"osd.{osd_id} up" in dump

    # radosgw stays in the foreground (-f): its Popen is the server's process.
    with (d / "log" / "radosgw.out").open("ab") as out:
        proc = subprocess.Popen(
            ["radosgw", *c, "-n", "client.rgw", "-f"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_env(),
        )
    endpoint = f"http://127.0.0.1:{rgw_port}"
    server = RGW(Process(proc, d / "log" / "client.rgw.log"), endpoint, ACCESS_KEY, SECRET_KEY)
    server.directory = d
    try:
        _wait(osd_up, "the OSD", d)

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"radosgw exited; logs in {d}/log")
            try:
                with urllib.request.urlopen(endpoint + "/", timeout=2):
                    return True
            except urllib.error.HTTPError:  # an S3 error is an answer
                return True

        _wait(answers, "radosgw", d)
        _run(["radosgw-admin", *c, "user", "create", "--uid=test", "--display-name=test",
              f"--access-key={ACCESS_KEY}", f"--secret={SECRET_KEY}"], log)  # fmt: skip
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RGW]:
    started = time.monotonic()
    # A short path: Ceph's admin sockets are Unix sockets (108 bytes at most).
    d = Path(tmp_path_factory.getbasetemp()) / "rgw"
    d.mkdir()
    server = start_rgw(d)
    print(f"Ceph RGW at {server.endpoint} answered after {time.monotonic() - started:.1f}s")
    yield server
    server.stop()
