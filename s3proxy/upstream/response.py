"""An upstream response as the proxy reads it: status, reason, headers and a body that arrives
while it is read (the part of aiohttp's ``ClientResponse`` and ``StreamReader`` the proxy uses:
``content.read(n)``, ``readexactly``, ``readany``, ``iter_chunked``, ``read()``, ``text()``,
``release()``, ``close()``, ``async with``)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import suppress
from types import TracebackType
from typing import Protocol

from multidict import CIMultiDictProxy

from s3proxy.upstream.httperrors import UpstreamPayloadError

# Reading from the connection pauses while more than this much of a body waits to be read,
# and resumes once the reader has taken it down to a quarter.
BUFFER_HIGH = 512 * 1024
BUFFER_LOW = BUFFER_HIGH // 4


class ReadControl(Protocol):
    """What a body asks of its connection: reading paused and resumed (flow control); its
    event loop."""

    loop: asyncio.AbstractEventLoop

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class Holder(Protocol):
    """What holds a response's connection: told when the response is let go."""

    def release(self) -> None: ...


class Body:
    """A response's body as it arrives: the connection feeds it, the proxy reads it."""

    __slots__ = ("_chunks", "_control", "_eof", "_error", "_paused", "_size", "_waiter", "_whole")

    def __init__(self, control: ReadControl) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._control = control
        self._paused = False
        self._whole = False

    # -- the connection's side -----------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._waiter is not None:
            self._wake()
        if self._size > BUFFER_HIGH and not self._paused and not self._whole:
            self._paused = True
            self._control.pause_reading()

    def feed_eof(self) -> None:
        self._eof = True
        if self._paused:
            self._paused = False
            self._control.resume_reading()
        if self._waiter is not None:
            self._wake()

    def set_error(self, error: BaseException) -> None:
        """The body broke off (a complete body keeps its bytes)."""
        if self._eof or self._error is not None:
            return
        self._error = error
        if self._waiter is not None:
            self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the reader's side ---------------------------------------------------------------

    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    async def _wait(self, whole: bool = False) -> None:
        """Until bytes (``whole``: all of them), the end, or an error are there."""
        while (whole or not self._chunks) and not self._eof and self._error is None:
            waiter = self._control.loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None

    def _take(self, count: int) -> bytes:
        """Up to ``count`` of the bytes there, in one piece: the pieces as received are joined
        (a large body's readers take fewer, larger pieces, as from aiohttp's reader)."""
        chunks = self._chunks
        first = chunks[0]
        if len(first) >= count:
            if len(first) == count:
                chunks.popleft()
            else:
                chunks[0] = first[count:]
                first = first[:count]
        else:
            chunks.popleft()
            if chunks:
                first = self._join(first, count)
        self._size -= len(first)
        if self._paused and self._size <= BUFFER_LOW:
            self._paused = False
            self._control.resume_reading()
        return first

    def _join(self, first: bytes, count: int) -> bytes:
        """``first`` and the pieces after it, up to ``count`` bytes."""
        chunks = self._chunks
        pieces, taken = [first], len(first)
        while chunks and taken < count:
            piece = chunks[0]
            if taken + len(piece) <= count:
                chunks.popleft()
            else:
                chunks[0] = piece[count - taken :]
                piece = piece[: count - taken]
            pieces.append(piece)
            taken += len(piece)
        return b"".join(pieces)

    async def read(self, count: int = -1) -> bytes:
        """Up to ``count`` bytes, as soon as any are there (``b""`` at the end); all of the
        body with ``count`` < 0."""
        if count < 0:
            return await self._read_all()
        if self._error is not None:
            raise self._error
        if not self._chunks:
            await self._wait()
            if self._error is not None:
                raise self._error
            if not self._chunks:
                return b""
        return self._take(count) if count else b""

    async def readany(self) -> bytes:
        """What has arrived (at most one piece as received), ``b""`` at the end."""
        if not self._chunks:
            await self._wait()
        if self._error is not None:
            raise self._error
        return self._take(len(self._chunks[0])) if self._chunks else b""

    async def readexactly(self, count: int) -> bytes:
        """Exactly ``count`` bytes; :class:`asyncio.IncompleteReadError` if the body ends
        first, the body's error if it broke off."""
        pieces: list[bytes] = []
        wanted = count
        while wanted:
            piece = await self.read(wanted)
            if not piece:
                raise asyncio.IncompleteReadError(b"".join(pieces), count)
            pieces.append(piece)
            wanted -= len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def iter_chunked(self, count: int) -> AsyncIterator[bytes]:
        """The body in pieces of at most ``count`` bytes, as they arrive."""
        while True:
            piece = await self.read(count)
            if not piece:
                return
            yield piece

    async def _read_all(self) -> bytes:
        self._whole = True  # (the caller wants all of it: no pause while it arrives)
        if self._paused:
            self._paused = False
            self._control.resume_reading()
        await self._wait(whole=True)
        if self._error is not None:
            raise self._error
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._size = 0
        return data


class Response:
    """The upstream's answer: its head at once, its body (:attr:`content`) as it arrives.
    The connection goes back to the pool when the body has arrived whole; :meth:`release`
    (or ``async with``) of a body not yet whole closes it instead (nothing is drained)."""

    __slots__ = ("_body", "_holder", "content", "headers", "reason", "status")

    def __init__(
        self,
        status: int,
        reason: str,
        headers: CIMultiDictProxy[str],
        content: Body,
        holder: Holder,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content = content
        self._holder: Holder | None = holder
        self._body: bytes | None = None

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None and value.isdigit() else None

    async def read(self) -> bytes:
        """The whole body (kept: a second call returns it again)."""
        if self._body is None:
            self._body = await self.content.read()
        return self._body

    async def text(self, encoding: str | None = None, errors: str = "replace") -> str:
        """The whole body as text, in the charset the answer names (else UTF-8)."""
        if encoding is None:
            kind = self.headers.get("Content-Type", "")
            _, found, charset = kind.partition("charset=")
            encoding = charset.split(";")[0].strip().strip('"') if found else "utf-8"
        try:
            return (await self.read()).decode(encoding, errors)
        except LookupError:
            return (await self.read()).decode("utf-8", errors)

    def release(self) -> None:
        """Done with the response: a body not yet whole closes the connection."""
        holder, self._holder = self._holder, None
        if holder is not None:
            holder.release()
        if not self.content.at_eof():
            self.content.set_error(UpstreamPayloadError("The response was released."))

    close = release  # (aiohttp's close: the same where the connection is not drained)

    def detach(self) -> None:
        """The exchange is over (the connection back in the pool, or closed)."""
        self._holder = None

    @property
    def closed(self) -> bool:
        """The exchange is over: the body has arrived whole, or the connection is closed."""
        return self._holder is None

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        holder = self._holder
        if holder is not None:  # dropped unreleased: its connection must not stay taken
            self._holder = None
            with suppress(RuntimeError):  # (the loop closed already)
                holder.release()
