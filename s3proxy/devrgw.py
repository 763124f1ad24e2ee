"""A throwaway single-node Ceph RADOS Gateway on loopback: one monitor, one OSD on ``memstore``
(data in RAM), no manager, ``auth = none``, radosgw's beast frontend on 127.0.0.1.

A real S3 server for the tests, the conformance run and the benchmark: unlike moto it verifies
SigV4, payload hashes and aws-chunked chunk signatures (docs/design.md, "Upstreams"). Debian's
``ceph-mon ceph-osd radosgw ceph-common`` provide the daemons (``make system-deps``). It starts in
about 1.5 s; every instance gets its own directory and free ports, and is stopped with SIGKILL
(everything is thrown away, and SIGTERM can hang radosgw for minutes).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from s3proxy.devstack import Process, S3Server, clean_env, free_port, wait_for

DAEMONS = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph-authtool")

ACCESS_KEY = "AKRGW000000000000000"
SECRET_KEY = "SKRGW0000000000000000000000000000000000000"

_CONF = """\
[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
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
paxos propose interval = 0.05
paxos min wait = 0.01
[mon]
mon data = {d}/data/mon.$id
[osd]
osd data = {d}/data/osd.$id
osd objectstore = memstore
memstore device bytes = {memstore_bytes}
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {d}/data/rgw
"""


def available() -> bool:
    """Whether Ceph's daemons are installed here."""
    return all(shutil.which(name) for name in DAEMONS)


@dataclass
class RgwServer(S3Server):
    """A running throwaway Ceph with its gateway; ``stop`` kills every daemon and removes it."""

    directory: Path = Path()
    daemons: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.directory / "ceph.conf"

    def admin(self, *args: str) -> str:
        """``radosgw-admin`` against this cluster; its standard output."""
        return _run(["radosgw-admin", "-c", str(self.conf), *args], self.directory / "admin.log")

    def add_user(
        self,
        uid: str,
        access_key: str,
        secret_key: str,
        *,
        display_name: str | None = None,
        email: str | None = None,
        tenant: str | None = None,
    ) -> None:
        args = ["user", "create", f"--uid={uid}", f"--display-name={display_name or uid}"]
        args += [f"--access-key={access_key}", f"--secret={secret_key}"]
        if email:
            args.append(f"--email={email}")
        if tenant:
            args.append(f"--tenant={tenant}")
        self.admin(*args)

    def stop(self) -> None:
        for daemon in reversed(self.daemons):
            if daemon.poll() is None:
                daemon.kill()
        for daemon in self.daemons:
            with contextlib.suppress(subprocess.TimeoutExpired):
                daemon.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


def _run(cmd: list[str], log: Path) -> str:
    with log.open("ab") as out:
        done = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=out, timeout=60, env=clean_env(), check=False
        )
    if done.returncode:
        raise RuntimeError(f"{cmd[0]} failed with {done.returncode}; see {log}")
    return done.stdout.decode()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer: the gateway is up
    except OSError:
        return False


def start_rgw(workdir: Path, *, memstore_bytes: int = 2 << 30) -> RgwServer:
    """A fresh cluster under ``workdir`` with one S3 user (``ACCESS_KEY``/``SECRET_KEY``);
    the daemons run in the foreground as this process's children."""
    d = workdir / f"rgw-{uuid.uuid4().hex[:8]}"
    for sub in ("data/mon.a", "data/osd.0", "data/rgw", "run", "log"):
        (d / sub).mkdir(parents=True)
    mon_port, rgw_port = free_port(), free_port()
    fsid = str(uuid.uuid4())
    conf = d / "ceph.conf"
    values = {"fsid": fsid, "mon_port": mon_port, "rgw_port": rgw_port, "d": d}
    conf.write_text(_CONF.format(memstore_bytes=memstore_bytes, **values))
    log = d / "log" / "start.log"
    c = ["-c", str(conf)]
    endpoint = f"http://127.0.0.1:{rgw_port}"
    daemons: list[subprocess.Popen[bytes]] = []

    def daemon(*cmd: str) -> subprocess.Popen[bytes]:
        out = (d / "log" / f"{cmd[0]}.out").open("ab")
        proc = subprocess.Popen([*cmd, "-f"], stdout=out, stderr=out, env=clean_env(),
                                stdin=subprocess.DEVNULL)  # fmt: skip
        out.close()
        daemons.append(proc)
        return proc

    try:
        keyring = ["--gen-key", "-n", "mon.", "--cap", "mon", "allow *"]
        _run(["ceph-authtool", "--create-keyring", str(d / "keyring"), *keyring], log)
        monmap = str(d / "data" / "monmap")
        _run(["monmaptool", "--create", "--fsid", fsid, "--addv", "a",
              f"[v2:127.0.0.1:{mon_port}]", monmap], log)  # fmt: skip
        mkfs = ["--mkfs", "-i", "a", "--monmap", monmap, "--keyring", str(d / "keyring")]
        _run(["ceph-mon", *c, *mkfs], log)
        daemon("ceph-mon", *c, "-i", "a")
        osd_uuid = str(uuid.uuid4())
        osd = _run(["ceph", *c, "--connect-timeout", "30", "osd", "new", osd_uuid], log).strip()
        _run(["ceph-osd", *c, "-i", osd, "--mkfs", "--osd-uuid", osd_uuid], log)
        daemon("ceph-osd", *c, "-i", osd)
        dump = ["ceph", *c, "--connect-timeout", "5", "osd", "dump"]
        wait_for(lambda: f"osd.{osd} up" in _run(dump, log), "ceph-osd", timeout=60)
        gateway = daemon("radosgw", *c, "-n", "client.rgw")
        wait_for(lambda: _answers(endpoint + "/"), "radosgw", timeout=120)
        server = RgwServer(Process(gateway, d / "log" / "radosgw.out"), endpoint, ACCESS_KEY,
                           SECRET_KEY, directory=d, daemons=daemons)  # fmt: skip
        server.add_user("s3proxy", ACCESS_KEY, SECRET_KEY)
    except BaseException:
        RgwServer(Process(daemons[-1], log) if daemons else None, endpoint, "", "",  # type: ignore[arg-type]
                  directory=d, daemons=daemons).stop()  # fmt: skip
        raise
    return server
