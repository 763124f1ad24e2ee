"""``s3proxy rewrap`` at scale: 2,000 objects, progress on a terminal, a dry run that changes
nothing, an interruption, and a resumed run that finishes the rest (real OpenBao and moto)."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from s3proxy.devstack import S3Server, Vault, proxy_env, start_vault
from s3proxy.ops.progress import Progress, ProgressDisplay, ResumePoint
from s3proxy.ops.walk import WalkOptions, _load_state, _save_state
from tests.conftest import start_proxy

OBJECTS = 2000


@pytest.fixture
def own_vault(workdir: Path) -> Iterator[Vault]:
    v = start_vault(workdir)
    yield v
    v.stop()


def test_resume_point_passes_only_finished_keys() -> None:
    point = ResumePoint("a")
    for key in ("b", "c", "d"):
        point.started(key)
    point.finished("c")
    assert point.after == "a"  # b is still running
    point.finished("b")
    assert point.after == "c"
    point.finished("d")
    assert point.after == "d"


def test_the_state_file_is_written_without_following_a_planted_symlink(tmp_path: Path) -> None:
    state = tmp_path / "rewrap.state"
    victim = tmp_path / "victim"
    victim.write_text("precious")
    # whoever can write the state's directory plants links where a writer might write
    for name in ("rewrap.state.tmp", ".rewrap.state.tmp"):
        (tmp_path / name).symlink_to(victim)
    options = WalkOptions(bucket="b", state=state)
    _save_state(options, "obj/00042", ["obj/00007"])
    assert victim.read_text() == "precious"
    assert not state.is_symlink()
    assert _load_state(options) == {
        "bucket": "b",
        "prefix": "",
        "after": "obj/00042",
        "failed": ["obj/00007"],
    }
    _save_state(options, "obj/00043", [])  # replaced whole, again
    assert _load_state(options)["after"] == "obj/00043" and victim.read_text() == "precious"
    leftovers = {p.name for p in tmp_path.iterdir()}
    assert leftovers == {"rewrap.state", "victim", "rewrap.state.tmp", ".rewrap.state.tmp"}
    assert oct(state.stat().st_mode & 0o777) == "0o600"


def test_a_state_file_that_is_not_one_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    from s3proxy.core.errors import S3ProxyError

    state = tmp_path / "rewrap.state"
    options = WalkOptions(bucket="b", state=state)
    for text in ("{not json", "[1, 2]", '{"failed": 3}', '{"after": 7}'):
        state.write_text(text)
        with pytest.raises(S3ProxyError, match="state file"):
            _load_state(options)
    state.write_bytes(b"\xff\xfe")
    with pytest.raises(S3ProxyError, match="cannot be read"):
        _load_state(options)


def test_progress_lines_without_a_terminal_come_every_few_seconds() -> None:
    now = [0.0]
    progress = Progress(
        total_objects=100, total_bytes=100 * 1024, started=0.0, clock=lambda: now[0]
    )
    out = io.StringIO()
    display = ProgressDisplay(progress, out, "rewrap")
    for second in range(1, 31):
        now[0] = float(second)
        progress.add("rewritten", 1024)
        display.tick()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # at 10, 20 and 30 s
    assert (
        lines[-1]
        == "rewrap: 30/100 objects, 30.0 KiB/100.0 KiB, 1.0 objects/s, 1.0 KiB/s, ETA 1m10s"
    )
    display.finish()
    assert (
        out.getvalue().splitlines()[-1]
        == "rewrap: done, 30 objects (30.0 KiB) in 30s: rewritten 30"
    )


def _run_on_a_terminal(
    args: list[str], env: dict[str, str], stop_when: Any = None
) -> tuple[int, str]:
    """Runs ``s3proxy`` with stderr on a pseudo-terminal; sends SIGINT once ``stop_when(text)``."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "s3proxy", *args],
        env=env,
        stderr=follower,
        stdout=subprocess.DEVNULL,
    )
    os.close(follower)
    text = b""
    interrupted = False
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if not select.select([leader], [], [], 1.0)[0]:
            continue  # nothing written for a second: look at the deadline again
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        text += chunk
        if stop_when is not None and not interrupted and stop_when(text.decode(errors="replace")):
            proc.send_signal(signal.SIGINT)
            interrupted = True
    os.close(leader)
    if time.monotonic() >= deadline and proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
        written = text.decode(errors="replace")[-4000:]
        pytest.fail(f"s3proxy {args[0]} still running after 240 s; it wrote:\n{written}")
    return proc.wait(timeout=60), text.decode(errors="replace")


def _versions(raw: Any, bucket: str, keys: list[str]) -> set[str]:
    found = set()
    for key in keys:
        head = raw.get_object(Bucket=bucket, Key=key, Range="bytes=0-255")["Body"].read()
        found.add(head[60:].split(b":")[1].decode())  # the wrapped key "vault:vN:…"
    return found


def test_rewrap_of_2000_objects_shows_progress_and_resumes(
    workdir: Path, own_vault: Vault, s3: S3Server, raw: Any, bucket: str, tmp_path: Path
) -> None:
    proxy = start_proxy(workdir, own_vault, s3)
    try:
        client = proxy.client()
        keys = [f"obj/{i:05d}" for i in range(OBJECTS)]
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda k: client.put_object(Bucket=bucket, Key=k, Body=k.encode() * 50), keys
                )
            )
    finally:
        proxy.stop()
    assert own_vault.api("POST", "transit/keys/s3proxy/rotate")[0] in (200, 204)
    env = proxy_env(own_vault, s3, port=1)
    state = tmp_path / "rewrap.state"
    common = ["rewrap", "--bucket", bucket, "--state", str(state), "--concurrency", "16"]

    status, text = _run_on_a_terminal([*common, "--dry-run"], env)
    assert status == 0, text
    assert f"would rewrap {OBJECTS}, already current 0" in text
    assert _versions(raw, bucket, keys[::200]) == {"v1"}  # nothing changed
    assert not state.exists()

    def far_enough(text: str) -> bool:
        done = re.findall(r"(\d+)/2000 objects", text)
        return state.exists() and bool(done) and int(done[-1]) >= 300

    status, text = _run_on_a_terminal(common, env, stop_when=far_enough)
    assert status == 130, text
    assert "\x1b[2K" in text and "/2000 objects" in text and "ETA" in text  # redrawn in place
    assert "interrupted" in text
    after = json.loads(state.read_text())["after"]
    # at least 300 were finished; up to 16 (the concurrency) may have run past the resume point
    assert f"obj/{300 - 16:05d}" <= after < keys[-1]

    status, text = _run_on_a_terminal(common, env)
    assert status == 0, text
    assert f"resuming after {after!r}" in text
    rest = sum(1 for k in keys if k > after)
    assert f"/{rest} objects" in text  # only what was left is walked again
    assert "failed 0" in text
    assert not state.exists()  # a completed walk forgets its resume point
    assert _versions(raw, bucket, keys[::50]) == {"v2"}
