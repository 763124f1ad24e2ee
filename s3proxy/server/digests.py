"""An upload's plaintext MD5 computed on a thread beside the event loop, where the process has
a second core: hashlib releases the GIL while it hashes, so the loop encrypts, checksums and
sends the stream meanwhile (docs/performance.md, *Large streams*). Updates keep their order (one
thread takes them first in, first out); a stream waits when more than :data:`AHEAD_LIMIT` of its
bytes, or :data:`PROCESS_LIMIT` of every stream's, are queued, so memory stays bounded however
many uploads run at once; and before its last segment, which records the digest."""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from s3proxy.config.ops import cores_available

OVERLAP_MIN = 1024 * 1024  # plaintext bytes below which a stream is hashed inline
AHEAD_LIMIT = 2 * 1024 * 1024  # plaintext bytes queued for the thread at most, per stream
PROCESS_LIMIT = 4 * 1024 * 1024  # and for all streams together (beyond one piece each)
_queued = [0]  # plaintext bytes queued for the thread by every stream


@functools.cache
def _thread() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3proxy-md5")


@functools.cache
def overlap_possible() -> bool:
    """Whether this process has a second core for the MD5 thread (affinity and CPU quota)."""
    return cores_available() > 1


def _unqueue(size: int, _: object) -> None:
    """A piece was hashed (or its stream given up): no longer counted as queued."""
    _queued[0] -= size


class OverlappedMd5:
    """The MD5 of one stream's plaintext, hashed on the MD5 thread (:class:`Digest`)."""

    def __init__(self) -> None:
        self._md5 = hashlib.md5()
        self._queued: deque[tuple[asyncio.Future[None], int]] = deque()
        self._ahead = 0

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        piece = data if isinstance(data, bytes) else bytes(data)  # (the caller may reuse it)
        future = asyncio.wrap_future(_thread().submit(self._md5.update, piece))
        future.add_done_callback(functools.partial(_unqueue, len(piece)))  # (on the loop)
        self._queued.append((future, len(piece)))
        self._ahead += len(piece)
        _queued[0] += len(piece)

    async def keep_up(self) -> None:
        """Wait while more than :data:`AHEAD_LIMIT` bytes are queued."""
        queued = self._queued
        while queued and queued[0][0].done():
            self._ahead -= queued.popleft()[1]
        while self._ahead > AHEAD_LIMIT or (self._ahead and _queued[0] > PROCESS_LIMIT):
            future, size = queued.popleft()
            await future
            self._ahead -= size

    async def caught_up(self) -> None:
        """Wait until every update is hashed."""
        while self._queued:
            future, size = self._queued.popleft()
            await future
            self._ahead -= size

    def digest(self) -> bytes:
        if self._queued:
            raise RuntimeError("the MD5 thread has not caught up (await caught_up() first)")
        return self._md5.digest()
