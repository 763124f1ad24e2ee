"""What the workers of one proxy (``S3PROXY_WORKERS``) tell each other for the probes: each
worker's *started* and *ready* verdicts, in a few bytes of memory they share. The kernel hands
any worker a connection, on the S3 port as on the admin port, so a probe must answer for all of
them: started once every worker has started, ready while every worker is ready
(docs/performance.md, Workers)."""

from __future__ import annotations

from collections.abc import MutableSequence

STARTED = 1
READY = 2
PUBLISH_INTERVAL = 0.2  # seconds between a worker's updates of its own verdicts


class Peers:
    """One worker's view of the shared verdicts: its own slot is ``index``."""

    def __init__(self, slots: MutableSequence[int], index: int) -> None:
        self._slots = slots
        self._index = index

    def publish(self, started: bool, ready: bool) -> None:
        self._slots[self._index] = (STARTED if started else 0) | (READY if ready else 0)

    def _others(self) -> list[int]:
        return [state for i, state in enumerate(self._slots) if i != self._index]

    def others_started(self) -> bool:
        return all(state & STARTED for state in self._others())

    def others_ready(self) -> bool:
        return all(state & READY for state in self._others())
