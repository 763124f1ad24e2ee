"""Sync tools converge through a fresh proxy (issue 21, Done-when): rclone ``sync`` and ``check``,
``aws s3 sync`` and s3cmd ``sync`` over 2,000 small objects (and a few larger), through the proxy
in front of a real Ceph RGW with default settings.

For each tool: the first ``sync`` up (proxy A) uploads everything; the same ``sync`` again through
a *fresh* proxy (a new process, nothing cached) transfers nothing; rclone ``check`` through a
fresh proxy finds no difference; ``sync`` down into a new directory through a fresh proxy yields
identical files, and again through a fresh proxy transfers nothing. The tools decide what to
transfer from the sizes and ETags (MD5s) the proxy lists and the metadata it HEADs (rclone's
modification times): a wrong size or ETag re-transfers, and these tests fail.

The file takes about 2.5 minutes on 2 shared cores (each tool about 50 s: three cold listings of
2,005 objects through fresh proxies, 2,005 uploads and downloads; s3cmd's are sequential).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from s3proxy.devstack import Vault
from tests.conftest import ProxyProcess, aws_cli, start_proxy
from tests.test_backup_tools import CORRUPTION, WORKLOAD_KEYS, _env

if TYPE_CHECKING:
    from tests.rgw import RGW

pytest_plugins = ["tests.rgw"]

FILES = 2000  # small files, 0 to 20 KiB
LARGER = {"larger/a.bin": 300_000, "larger/b.bin": 2_000_000, "larger/c.bin": 9 * 2**20}
TIMEOUT = 300  # seconds, for one run of a tool
PARALLEL = 16  # rclone's transfers and checkers, the AWS CLI's concurrent requests
MTIME = time.time() - 86_400  # the local files' modification times: a day ago (± an hour)

VERBS = ("sync", "check")  # shown in what a run prints
pytestmark = pytest.mark.timeout(600)

Fresh = Callable[[], AbstractContextManager[ProxyProcess]]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 small files in 20 directories, a few empty, and three larger ones."""
    root = tmp_path_factory.mktemp("sync-source")
    rng = random.Random(2000)
    sizes = {f"d{i % 20:02d}/f{i:04d}.bin": rng.randrange(20 * 1024 + 1) for i in range(FILES)}
    sizes.update({"d00/empty-1": 0, "d07/empty-2": 0, **LARGER})
    for name, size in sizes.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
        stamp = MTIME + rng.uniform(-3600, 3600)
        os.utime(path, (stamp, stamp))
    return root


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def sync_bucket(rgw: RGW) -> str:
    name = f"sync-{uuid.uuid4().hex[:12]}"
    rgw.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def fresh(workdir: Path, vault: Vault, rgw: RGW) -> Iterator[Fresh]:
    """``with fresh() as proxy``: a new proxy process (default settings) for one step. The next
    one starts in the background while a step runs (a process that only started has nothing
    cached), which saves the test about a second of start-up per step."""
    spares: ThreadPoolExecutor = ThreadPoolExecutor(1)
    spare: list[Future[ProxyProcess]] = [spares.submit(start_proxy, workdir, vault, rgw)]

    @contextmanager
    def take() -> Iterator[ProxyProcess]:
        proxy = spare.pop().result()
        spare.append(spares.submit(start_proxy, workdir, vault, rgw))
        try:
            yield proxy
        finally:
            proxy.stop()

    yield take
    spare.pop().result().stop()
    spares.shutdown()


def run(argv: list[str], env: dict[str, str]) -> str:
    """Runs a tool, which must succeed without reporting a checksum mismatch; its output."""
    started = time.monotonic()
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL
    )
    output = done.stdout + done.stderr
    shown = " ".join([Path(argv[0]).name, *(a for a in argv[1:] if a in VERBS), *argv[-2:]])
    print(f"{shown}: {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, f"{shown} exited {done.returncode}:\n{output[-3000:]}"
    mismatches = [line for line in output.splitlines() if any(c in line for c in CORRUPTION)]
    assert not mismatches, f"{shown}: checksum mismatches reported:\n" + "\n".join(mismatches[:4])
    return output


# ---- rclone --------------------------------------------------------------------------------------


def rclone(proxy: ProxyProcess, home: Path, *args: str) -> list[dict[str, object]]:
    """rclone with remote ``target:`` at the proxy; its JSON log entries."""
    home.mkdir(exist_ok=True)
    (home / "rclone.conf").write_text("")
    remote = {
        "TYPE": "s3",
        "PROVIDER": "Other",
        "ENDPOINT": proxy.endpoint,
        "ACCESS_KEY_ID": WORKLOAD_KEYS[0],
        "SECRET_ACCESS_KEY": WORKLOAD_KEYS[1],
        "REGION": "us-east-1",
    }
    env = {"RCLONE_CONFIG": str(home / "rclone.conf")}
    env.update({f"RCLONE_CONFIG_TARGET_{k}": v for k, v in remote.items()})
    program = shutil.which("rclone")
    assert program, "rclone is not installed: run `make system-deps`"
    flags = ["--use-json-log", "-v", "--transfers", str(PARALLEL), "--checkers", str(PARALLEL)]
    output = run([program, *flags, *args], _env(home, env))
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def rclone_stats(log: list[dict[str, object]]) -> dict[str, int]:
    stats = [entry["stats"] for entry in log if isinstance(entry.get("stats"), dict)]
    assert stats, log[-5:]
    last = stats[-1]
    assert isinstance(last, dict)
    return {k: int(v) for k, v in last.items() if k in ("transfers", "checks", "deletes", "errors")}


def rclone_changes(log: list[dict[str, object]]) -> list[str]:
    """What rclone changed: copies, and modification times it set on objects that matched."""
    changed = ("Copied", "Updated modification time", "Deleted")
    return [f"{e.get('object')}: {e['msg']}" for e in log if str(e.get("msg")).startswith(changed)]


def test_rclone_sync_and_check_converge_through_a_fresh_proxy(
    fresh: Fresh, source: Path, sync_bucket: str, tmp_path: Path
) -> None:
    remote = f"target:{sync_bucket}/rclone"
    count = len(tree(source))
    with fresh() as proxy:
        first = rclone(proxy, tmp_path / "home", "sync", str(source), remote)
    assert rclone_stats(first)["transfers"] == count
    with fresh() as proxy:
        again = rclone(proxy, tmp_path / "home", "sync", str(source), remote)
    assert rclone_changes(again) == []
    assert rclone_stats(again) == {"transfers": 0, "checks": count, "deletes": 0, "errors": 0}
    with fresh() as proxy:
        checked = rclone(proxy, tmp_path / "home", "check", str(source), remote)
    messages = [str(e["msg"]) for e in checked]
    assert "0 differences found" in messages, messages[-5:]
    assert f"{count} matching files" in messages, messages[-5:]
    down = tmp_path / "down"
    with fresh() as proxy:
        fetched = rclone(proxy, tmp_path / "home", "sync", remote, str(down))
    assert rclone_stats(fetched)["transfers"] == count
    assert tree(down) == tree(source)
    with fresh() as proxy:
        again = rclone(proxy, tmp_path / "home", "sync", remote, str(down))
    assert rclone_changes(again) == []
    assert rclone_stats(again) == {"transfers": 0, "checks": count, "deletes": 0, "errors": 0}


# ---- the AWS CLI ---------------------------------------------------------------------------------


def aws(proxy: ProxyProcess, home: Path, *args: str) -> list[str]:
    """``aws s3 ...`` at the proxy, 16 requests at a time; the lines it printed."""
    home.mkdir(exist_ok=True)
    config = home / "config"
    config.write_text(f"[default]\ns3 =\n  max_concurrent_requests = {PARALLEL}\n")
    env = {
        "AWS_ENDPOINT_URL_S3": proxy.endpoint,
        "AWS_ACCESS_KEY_ID": WORKLOAD_KEYS[0],
        "AWS_SECRET_ACCESS_KEY": WORKLOAD_KEYS[1],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    return run([aws_cli(), "s3", *args, "--no-progress"], _env(home, env)).splitlines()


def transferred(lines: list[str], verb: str) -> list[str]:
    """The lines of files a tool transferred (``upload:``/``download:``)."""
    return [line for line in lines if line.startswith(f"{verb}:")]


def test_aws_s3_sync_converges_through_a_fresh_proxy(
    fresh: Fresh, source: Path, sync_bucket: str, tmp_path: Path
) -> None:
    """The AWS CLI transfers a file when its size differs, or its modification time is newer
    than the other side's."""
    remote = f"s3://{sync_bucket}/aws"
    count = len(tree(source))
    with fresh() as proxy:
        assert (
            len(transferred(aws(proxy, tmp_path, "sync", str(source), remote), "upload")) == count
        )
    with fresh() as proxy:
        assert transferred(aws(proxy, tmp_path, "sync", str(source), remote), "upload") == []
    down = tmp_path / "down"
    with fresh() as proxy:
        fetched = transferred(aws(proxy, tmp_path, "sync", remote, str(down)), "download")
    assert len(fetched) == count
    assert tree(down) == tree(source)
    with fresh() as proxy:
        assert transferred(aws(proxy, tmp_path, "sync", remote, str(down)), "download") == []


# ---- s3cmd ---------------------------------------------------------------------------------------


def s3cmd(proxy: ProxyProcess, home: Path, *args: str) -> list[str]:
    """s3cmd at the proxy (path style), configured with nothing else; the lines it printed."""
    home.mkdir(exist_ok=True)
    host = proxy.endpoint.removeprefix("http://")
    (home / ".s3cfg").write_text(
        "[default]\n"
        f"host_base = {host}\nhost_bucket = {host}\nuse_https = False\n"
        f"access_key = {WORKLOAD_KEYS[0]}\nsecret_key = {WORKLOAD_KEYS[1]}\n"
    )
    program = shutil.which("s3cmd")
    assert program, "s3cmd is not installed: run `make system-deps`"
    argv = [program, "-c", str(home / ".s3cfg"), "--no-progress", *args]
    return run(argv, _env(home, {})).splitlines()


def test_s3cmd_sync_converges_through_a_fresh_proxy(
    fresh: Fresh, source: Path, sync_bucket: str, tmp_path: Path
) -> None:
    """s3cmd transfers a file when its size or MD5 differs from the listed size or ETag."""
    remote = f"s3://{sync_bucket}/s3cmd/"
    count = len(tree(source))
    with fresh() as proxy:
        uploaded = transferred(s3cmd(proxy, tmp_path, "sync", f"{source}/", remote), "upload")
    assert len(uploaded) == count
    with fresh() as proxy:
        assert transferred(s3cmd(proxy, tmp_path, "sync", f"{source}/", remote), "upload") == []
    down = tmp_path / "down"
    down.mkdir()
    with fresh() as proxy:
        fetched = transferred(s3cmd(proxy, tmp_path, "sync", remote, f"{down}/"), "download")
    assert len(fetched) == count
    assert tree(down) == tree(source)
    with fresh() as proxy:
        assert transferred(s3cmd(proxy, tmp_path, "sync", remote, f"{down}/"), "download") == []
