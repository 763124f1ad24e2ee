"""CPU seconds and peak resident memory of running processes, read from /proc (Linux)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def family(pid: int) -> list[int]:
    """``pid`` and its live descendants (nginx: the master and its workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of these processes, all their threads included."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def _status_kib(pid: int, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak(pids: list[int]) -> bool:
    """Start a new peak RSS (VmHWM) window: writing 5 to clear_refs sets the peak to the
    current RSS. False where the kernel or permissions do not allow it."""
    done = True
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            done = False
    return done


def peak_rss_mib(pids: list[int]) -> float:
    """The largest VmHWM among these processes (per process, as the issue's target is per
    worker), in MiB."""
    return max((_status_kib(pid, "VmHWM") for pid in pids), default=0) / 1024


@dataclass
class Usage:
    cpu_s: float
    peak_rss_mib: float


class Meter:
    """Measures one process family over one workload: ``start()``, run, ``stop()``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._cpu = 0.0
        self.peak_reset = True

    def start(self) -> None:
        pids = family(self.pid)
        self.peak_reset = reset_peak(pids)
        self._cpu = cpu_seconds(pids)

    def stop(self) -> Usage:
        pids = family(self.pid)
        return Usage(cpu_seconds(pids) - self._cpu, peak_rss_mib(pids))
