"""Progress of an operator command that walks a bucket: counts, bytes, rate and ETA, shown as one
redrawn line on a terminal or as a log line every few seconds otherwise; and the resume point of
a walk whose objects finish out of order. Pure, apart from the clock and stream handed in."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

LOG_EVERY = 10.0  # seconds between progress lines when not on a terminal
DRAW_EVERY = 0.25  # seconds between redraws on a terminal


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_seconds(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass
class Progress:
    """Objects and bytes done out of an expected total (None while unknown)."""

    total_objects: int | None = None
    total_bytes: int | None = None
    objects: int = 0
    bytes: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    clock: Callable[[], float] = time.monotonic

    def add(self, outcome: str, size: int) -> None:
        self.objects += 1
        self.bytes += size
        self.outcomes[outcome] += 1

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.objects / elapsed
        parts = [
            f"{self.objects}"
            + (f"/{self.total_objects}" if self.total_objects is not None else "")
            + " objects",
            human_bytes(self.bytes)
            + (f"/{human_bytes(self.total_bytes)}" if self.total_bytes is not None else ""),
            f"{rate:.1f} objects/s",
            f"{human_bytes(self.bytes / elapsed)}/s",
        ]
        if self.total_objects is not None and rate > 0:
            left = max(self.total_objects - self.objects, 0) / rate
            parts.append(f"ETA {human_seconds(left)}")
        return ", ".join(parts)

    def summary(self) -> str:
        elapsed = self.clock() - self.started
        counts = ", ".join(f"{name} {n}" for name, n in sorted(self.outcomes.items()))
        return (
            f"{self.objects} objects ({human_bytes(self.bytes)}) in {human_seconds(elapsed)}: "
            + (counts or "nothing to do")
        )


class ProgressDisplay:
    """Shows a :class:`Progress` on ``stream``: redrawn in place on a terminal, a plain line
    every :data:`LOG_EVERY` seconds otherwise."""

    def __init__(self, progress: Progress, stream: TextIO, label: str) -> None:
        self.progress = progress
        self.stream = stream
        self.label = label
        self.tty = stream.isatty()
        self._last = progress.clock()

    def tick(self, force: bool = False) -> None:
        now = self.progress.clock()
        if not force and now - self._last < (DRAW_EVERY if self.tty else LOG_EVERY):
            return
        self._last = now
        text = f"{self.label}: {self.progress.line()}"
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line of its own (a failure, say) that does not garble the progress line."""
        self.stream.write(("\r\x1b[2K" if self.tty else "") + text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        self.tick(force=True)
        if self.tty:
            self.stream.write("\n")
        self.stream.write(f"{self.label}: done, {self.progress.summary()}\n")
        self.stream.flush()


class ResumePoint:
    """Keys are started in listing order and finish in any order; the resume point is the last
    key before which every key has finished, so a restart after it redoes nothing finished and
    skips nothing unfinished."""

    def __init__(self, after: str = "") -> None:
        self.after = after
        self._order: deque[str] = deque()  # started, not yet passed by the resume point
        self._done: set[str] = set()

    def started(self, key: str) -> None:
        self._order.append(key)

    def finished(self, key: str) -> None:
        self._done.add(key)
        while self._order and self._order[0] in self._done:
            first = self._order.popleft()
            self._done.discard(first)
            self.after = first
