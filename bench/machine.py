"""What the benchmark states about the machine it ran on: cores, CPU model, memory, load,
versions, and one core's MD5 speed (the 1 GiB PUT target is a share of it)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import subprocess
import time
from pathlib import Path

GiB = 2**30
MiB = 2**20
MB = 1_000_000
REPO = Path(__file__).resolve().parent.parent


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def describe() -> dict[str, str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    quota = "none"
    with contextlib.suppress(OSError):
        value = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if value[0] != "max":
            quota = f"{int(value[0]) / int(value[1]):g} CPUs"
    return {
        "cpu": f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable, cgroup quota "
        f"{quota}), {model}",
        "memory": f"{mem_available() / GiB:.1f} GiB available",
        "kernel": platform.release(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def versions() -> str:
    def out(cmd: list[str]) -> str:
        with contextlib.suppress(Exception):
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (done.stdout + done.stderr).strip().splitlines()[0]
        return "?"

    commit = out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    return (
        f"s3proxy {commit}, {out(['nginx', '-v'])}, {out(['wrk', '-v'])}, "
        f"Python {platform.python_version()}"
    )


def md5_speed(size: int) -> float:
    """One core's MD5 in MB/s (10^6), fed 1 MiB at a time, best of three."""
    data = os.urandom(size)
    view = memoryview(data)
    best = float("inf")
    for _ in range(3):
        h = hashlib.md5()
        started = time.perf_counter()
        for i in range(0, size, MiB):
            h.update(view[i : i + MiB])
        h.digest()
        best = min(best, time.perf_counter() - started)
    return size / best / MB
