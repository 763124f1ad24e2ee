"""What the bounded body reads (s3proxy/server/bodies.py) cost against aiohttp's plain
``iter_chunked``, per request body, on one core. Two cases: the body is already buffered when
the handler reads it (a small PUT arrives with its headers), and each piece arrives only after
the reader waits (the timer path). Run: python bench/bodyread.py"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from aiohttp import streams

from s3proxy.server.bodies import body_chunks

ROUNDS = 5000
PIECES = 4  # pieces per body in the waiting case

Reader = Callable[[Any], AsyncIterator[bytes]]


def _plain(request: Any) -> AsyncIterator[bytes]:
    return request.content.iter_chunked(256 * 1024)  # type: ignore[no-any-return]


def _bounded(request: Any) -> AsyncIterator[bytes]:
    return body_chunks(request, 256 * 1024)


class _Request(dict[Any, Any]):
    """What a body reader uses of a request: its content and its keys."""

    def __init__(self, content: streams.StreamReader) -> None:
        super().__init__()
        self.content = content


class _Protocol:
    _reading_paused = False
    connected = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


def _request(loop: asyncio.AbstractEventLoop) -> tuple[Any, streams.StreamReader]:
    reader = streams.StreamReader(cast(Any, _Protocol()), 2**16, loop=loop)
    return _Request(reader), reader


async def _buffered(read: Reader, data: bytes) -> float:
    loop = asyncio.get_running_loop()
    requests = [_request(loop) for _ in range(ROUNDS)]  # (mocked requests are slow to make)
    for _, reader in requests:
        reader.feed_data(data)
        reader.feed_eof()
    started = time.process_time()
    for request, _ in requests:
        async for _piece in read(request):
            pass
    return (time.process_time() - started) / ROUNDS * 1e6


async def _feed(reader: streams.StreamReader, data: bytes) -> None:
    for _ in range(PIECES):
        await asyncio.sleep(0)
        reader.feed_data(data)
    reader.feed_eof()


async def _waiting(read: Reader, data: bytes) -> float:
    """(The feeding task's own cost is the same in both rows.)"""
    loop = asyncio.get_running_loop()
    requests = [_request(loop) for _ in range(ROUNDS // 4)]
    started = time.process_time()
    for request, reader in requests:
        feeding = asyncio.ensure_future(_feed(reader, data))
        async for _piece in read(request):
            pass
        await feeding
    return (time.process_time() - started) / len(requests) * 1e6


async def main() -> None:
    data = b"x" * 4096
    for name, read in (("iter_chunked", _plain), ("body_chunks", _bounded)):
        buffered = min([await _buffered(read, data) for _ in range(7)])
        waiting = min([await _waiting(read, data) for _ in range(7)])
        print(
            f"{name:>12}: 4 KiB body already buffered {buffered:.1f} us; "
            f"{PIECES} pieces each after a wait {waiting:.1f} us"
        )


if __name__ == "__main__":
    asyncio.run(main())
