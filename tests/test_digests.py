"""The MD5 of an upload hashed on a thread beside the event loop (server/digests.py): the same
digest as hashlib's, in order, bounded in what it queues, and refused before it caught up."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
from concurrent.futures import Future

import pytest

from s3proxy.server import digests
from s3proxy.server.digests import AHEAD_LIMIT, OverlappedMd5


def test_the_digest_is_hashlibs_over_pieces_of_any_size_and_kind() -> None:
    rng = random.Random(7)
    pieces = [os.urandom(rng.choice([0, 1, 100, 2048, 65536, 1 << 20])) for _ in range(60)]

    async def run() -> tuple[bytes, int]:
        md5 = OverlappedMd5()
        most = 0
        reused = bytearray(4096)
        for i, piece in enumerate(pieces):
            kind = (bytes, bytearray, memoryview)[i % 3]
            md5.update(kind(piece))
            await md5.keep_up()
            most = max(most, md5._ahead)
        md5.update(reused)
        reused[:] = b"\xff" * 4096  # changed after the update: the digest is of what was given
        await md5.caught_up()
        await asyncio.sleep(0)  # (the futures' callbacks run on the loop's next turn)
        assert digests._queued[0] == 0  # every stream's bytes counted out again
        return md5.digest(), most

    digest, most = asyncio.run(run())
    expected = hashlib.md5(b"".join(pieces) + bytes(4096)).digest()
    assert digest == expected
    assert most <= AHEAD_LIMIT


def _held_thread() -> tuple[threading.Event, Future[bool]]:
    """The MD5 thread kept busy until the returned event is set."""
    gate = threading.Event()
    return gate, digests._thread().submit(gate.wait, 5)


def test_updates_queue_no_more_than_the_limit() -> None:
    """With the thread held up, the loop waits once the queued bytes pass the limit."""

    async def run() -> None:
        gate, held = _held_thread()
        md5 = OverlappedMd5()
        for _ in range(3):
            md5.update(os.urandom(AHEAD_LIMIT // 2))
        waiting = asyncio.ensure_future(md5.keep_up())
        await asyncio.sleep(0.2)
        assert not waiting.done()  # 1.5 limits queued: it waits
        gate.set()
        await waiting
        assert md5._ahead <= AHEAD_LIMIT
        await md5.caught_up()
        assert held.result(5)

    asyncio.run(run())


def test_the_digest_is_refused_until_the_thread_caught_up() -> None:
    async def run() -> None:
        gate, _ = _held_thread()
        md5 = OverlappedMd5()
        md5.update(b"x" * 4096)
        with pytest.raises(RuntimeError):
            md5.digest()
        gate.set()
        await md5.caught_up()
        assert md5.digest() == hashlib.md5(b"x" * 4096).digest()

    asyncio.run(run())
