"""Digests of large bodies off the event loop, overlapping the cipher and the socket I/O.

hashlib's MD5 and SHA-256, zlib's CRC32 release the GIL while they hash a large buffer, so a
pool thread can hash a stream's last megabyte while the loop encrypts and sends the next. MD5
(which plaintext ETags need) is the slowest step of an upload, about 1.6 s per GiB of one core:
beside the loop it costs the stream no time. The cipher stays on the loop: AES-GCM runs once
per 64 KiB segment, and a thread giving the GIL back and taking it again for every segment
costs more than the cipher itself (measured; docs/design.md).

Only streams of at least :data:`OFFLOAD_MIN` bytes hash in the pool: the hop to a thread and
back costs tens of microseconds, more than a small body's hashing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

Piece = bytes | bytearray | memoryview
P = TypeVar("P", bound=Piece)

# Streams shorter than this hash on the loop.
OFFLOAD_MIN = 1024 * 1024
# Bytes of pieces one job hashes: large enough that the hop is a small cost, small enough that
# a stream holds little more than two batches (the one being hashed, the one gathering).
BATCH = 1024 * 1024
# Threads for every stream of the process; each stream has at most two jobs running (its MD5,
# the client's digests), so a few streams at once hash in parallel.
THREADS = 4

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def pool() -> ThreadPoolExecutor:
    """The process's offload pool, made on first use (so a forked worker makes its own)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="s3proxy-offload")
        return _pool


class Digests(Generic[P]):
    """Feeds a stream's pieces to digests in the offload pool, behind the stream.

    The loop hands each piece to :meth:`add` and goes on with it at once (encrypting it,
    sending it); the pieces gather until :data:`BATCH` bytes, which one job then feeds to
    ``update`` in a pool thread while the loop handles the next ones. Jobs run one at a time, in
    order, so the digests see the bytes as they came. :meth:`flush` waits until every piece was
    fed; only then may the loop read the digests. The pieces must not change after
    :meth:`add` (bytes, or buffers their producer never reuses).
    """

    def __init__(self, update: Callable[[list[P]], None]) -> None:
        self._update = update
        self._pieces: list[P] = []
        self._held = 0
        self._job: asyncio.Future[None] | None = None

    async def add(self, piece: P) -> None:
        self._pieces.append(piece)
        self._held += len(piece)
        if self._held >= BATCH:
            await self._start()

    async def _start(self) -> None:
        if self._job is not None:
            job, self._job = self._job, None
            await job
        pieces, self._pieces, self._held = self._pieces, [], 0
        self._job = asyncio.get_running_loop().run_in_executor(pool(), self._update, pieces)

    async def flush(self) -> None:
        """Wait until every piece added so far went into the digests; raises what they
        raised."""
        if self._pieces:
            await self._start()
        job, self._job = self._job, None
        if job is not None:
            await job

    def abandon(self) -> None:
        """Give up (the stream failed): a job still running is left to end, its outcome
        consumed so an exception in it is not reported as never retrieved."""
        job, self._job = self._job, None
        self._pieces = []
        if job is not None:
            job.add_done_callback(_consume)


def _consume(job: asyncio.Future[Any]) -> None:
    if not job.cancelled():
        job.exception()
