"""py-spy on s3proxy under the benchmark's loads (``bench/run.py --profile``), and summaries of
its collapsed stacks (``py-spy record --format raw``): the functions that were on CPU themselves
(self) and those under which the time was spent (inclusive).

    python bench/profiles.py STACKS.txt [TOP]
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import loads
import report
from stack import Stack

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    """``name (file:line)`` as ``name (package/module.py)``, without the line."""
    found = _FRAME.match(frame.strip())
    if not found:
        return frame.strip()
    path = found["file"]
    for marker in ("site-packages/", "/lib/python3", "/s3proxy/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/s3proxy/":
                path = "s3proxy/" + path
            break
    return f"{found['name']} ({path})"


def read(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append(([_short(f) for f in stack.split(";")], int(count)))
    return stacks


# Leaves where a thread waits rather than works: a thread-pool worker blocked on its queue
# (Vault calls run in a pool) and the event loop in epoll. py-spy does not always tell them idle.
WAITING = {"_worker (concurrent/futures/thread.py)", "EpollSelector.select (selectors.py)"}


def summary(path: Path, top: int = 12) -> list[str]:
    every = read(path) if path.exists() else []
    stacks = [(frames, count) for frames, count in every if frames[-1] not in WAITING]
    waiting = sum(count for _, count in every) - sum(count for _, count in stacks)
    total = sum(count for _, count in stacks)
    if not total:
        return [f"(no samples in {path})"]
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    for frames, count in stacks:
        own[frames[-1]] += count
        for frame in set(frames):
            under[frame] += count
    lines = [
        f"{total} busy samples ({waiting} more waiting in a thread pool or epoll, left out). "
        "Self (on CPU in the function itself):",
        "",
    ]
    lines += [f"- {count / total:5.1%} {frame}" for frame, count in own.most_common(top)]
    lines += ["", "Self time by package:", ""]
    lines += [f"- {count / total:5.1%} {name}" for name, count in by_package(own).most_common(8)]
    lines += ["", "Inclusive (the function and what it called), below the event loop:", ""]
    shown = [(f, c) for f, c in under.most_common() if _function(f) not in _DRIVERS]
    lines += [f"- {count / total:5.1%} {frame}" for frame, count in shown[:top]]
    return lines


# Frames that only drive the event loop: every sample is under them.
_DRIVERS = {
    "run_forever",
    "_run_once",
    "run_until_complete",
    "run",
    "_run",
    "_serve",
    "main",
    "<module>",
    "_run_code",
    "_run_module_as_main",
}


def _function(frame: str) -> str:
    return frame.split(" (", 1)[0].rsplit(".", 1)[-1]


def by_package(own: Counter[str]) -> Counter[str]:
    """Self samples per top-level package (``s3proxy`` split by subpackage)."""
    found: Counter[str] = Counter()
    for frame, count in own.items():
        path = frame.rsplit(" (", 1)[-1].rstrip(")")
        parts = path.split("/")
        name = "/".join(parts[:2]) if parts[0] == "s3proxy" and len(parts) > 2 else parts[0]
        found[name.removesuffix(".py")] += count
    return found


def profile(stack: Stack, settings: loads.Settings, out: Path) -> list[str]:
    """py-spy on s3proxy under 4 KiB GET and PUT (wrk, 64 connections) and the large GET and PUT;
    the collapsed stacks go to ``out``, their top frames into the report."""
    out.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    wanted: list[tuple[str, Callable[[], loads.Figures]]] = [
        (
            "get-4k",
            lambda: loads.wrk(stack.url("s3proxy"), "GET", "small-enc", 64, settings.duration),
        ),
        (
            "put-4k",
            lambda: loads.wrk(stack.url("s3proxy"), "PUT", "sink/put-4k", 64, settings.duration),
        ),
        ("get-big", lambda: loads.curl(stack.url("s3proxy"), "GET", "big-enc", settings)),
        ("put-big", lambda: loads.curl(stack.url("s3proxy"), "PUT", "sink/put-big", settings)),
    ]
    lines: list[str] = []
    for name, run in wanted:
        raw = out / f"{name}.txt"
        cmd = [spy, "record", "--pid", str(stack.pids["s3proxy"]), "--format", "raw"]
        cmd += ["--rate", "100", "--output", str(raw)]
        with (out / f"{name}.log").open("wb") as spy_log:
            spy_proc = subprocess.Popen(cmd, stdout=spy_log, stderr=subprocess.STDOUT)
        try:
            time.sleep(1.0)  # py-spy attaches
            figures = run()
        finally:
            spy_proc.send_signal(signal.SIGINT)
            try:
                spy_proc.wait(60)
            except subprocess.TimeoutExpired:
                spy_proc.kill()
                spy_proc.wait(5)
        lines += ["", f"#### {name} under py-spy ({report.short(figures)})", ""]
        lines += summary(raw)
    return lines


if __name__ == "__main__":
    print("\n".join(summary(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 12)))
