"""One HTTP/1.1 connection to the upstream: an asyncio protocol that writes requests, hands
what it reads to the current :class:`~s3proxy.upstream.exchange.Exchange`, applies flow control
both ways, and times out a response that stops arriving."""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol

from s3proxy.upstream.exchange import Exchange
from s3proxy.upstream.httperrors import UpstreamConnectionError, UpstreamTimeout


class Owner(Protocol):
    """The pool a connection belongs to."""

    def put(self, conn: Connection) -> None:
        """``conn`` is free for the next request."""

    def forget(self, conn: Connection) -> None:
        """``conn`` is closed (its place in the pool is free)."""


# What one read from a connection may bring (asyncio's own read size).
RECEIVE_SIZE = 256 * 1024
# The buffer the connections of one event loop receive into, one after the other: what is read
# is parsed at once, and the parser hands out copies (no buffer allocated per read).
_RECEIVE_BUFFERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, memoryview] = (
    weakref.WeakKeyDictionary()
)


def _receive_buffer(loop: asyncio.AbstractEventLoop) -> memoryview:
    found = _RECEIVE_BUFFERS.get(loop)
    if found is None:
        found = _RECEIVE_BUFFERS[loop] = memoryview(bytearray(RECEIVE_SIZE))
    return found


class Connection(asyncio.BufferedProtocol):
    """A kept-alive connection, one exchange at a time. The read timeout is one timer per
    connection, moved on only when it fires (no timer per request or per read). It receives
    into its loop's buffer (``recv_into``), parsed as it arrives."""

    def __init__(self, owner: Owner, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        self._owner = owner
        self.loop = loop  # (kept: asyncio.get_running_loop() asks the kernel for the pid)
        self._read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.reused = False  # an earlier response came over it
        self.closed = False
        self.idle_since = 0.0
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._reads = 0  # data_received calls (the read timer looks at them: no clock per read)
        self._reads_seen = -1
        self._timer: asyncio.TimerHandle | None = None
        self._received = _receive_buffer(loop)  # (shared by the loop's connections)

    # -- the exchange's side ---------------------------------------------------------------

    def begin(self, head_only: bool) -> Exchange:
        exchange = self.exchange = Exchange(self, head_only, self.loop)
        return exchange

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def request_sent(self, exchange: Exchange) -> None:
        """The request went out whole: the response's read timeout starts."""
        exchange.sent = True
        self._reads += 1  # (the silence counts from here)
        if self._timer is None:
            self._reads_seen = self._reads
            self._timer = self.loop.call_later(self._read_timeout, self._check_read)

    async def drain(self) -> None:
        """Until the transport takes more (after ``pause_writing``)."""
        while self.write_paused:
            if self.closed:
                raise UpstreamConnectionError("The upstream connection closed.")
            waiter = self._drain = self.loop.create_future()
            try:
                await waiter
            finally:
                self._drain = None

    def pause_reading(self) -> None:
        if not self._reading_paused and not self.closed and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and not self.closed and self.transport is not None:
            self._reading_paused = False
            self._reads += 1  # (a pause is the reader's time, not the upstream's)
            self.transport.resume_reading()

    def broken(self) -> None:
        """The upstream sent what it should not have: the connection is not used again."""
        self.abort()

    def finished(self, exchange: Exchange, reusable: bool) -> None:
        """``exchange`` is over; the connection goes back to the pool or is closed."""
        if self.exchange is exchange:
            self.exchange = None
        if reusable and not self.closed:
            self.reused = True
            if self._reading_paused:
                self.resume_reading()
            self._owner.put(self)
        else:
            self.abort()

    def abort(self) -> None:
        """Close at once, unsent bytes dropped (a request never completes on the upstream)."""
        self._shut(abort=True)

    def close(self) -> None:
        """Close an idle connection."""
        self._shut(abort=False)

    def _shut(self, abort: bool) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                if abort:
                    self.transport.abort()
                else:
                    self.transport.close()
        self._owner.forget(self)

    @property
    def usable(self) -> bool:
        transport = self.transport
        return not self.closed and transport is not None and not transport.is_closing()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._received

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._received[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        exchange = self.exchange
        if exchange is None:  # nothing was asked: the upstream is out of step
            self.abort()
            return
        self._reads += 1
        exchange.feed(data)

    def eof_received(self) -> bool:
        self._ended(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._owner.forget(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain()

    def _ended(self, exc: BaseException | None) -> None:
        self.closed = True
        exchange = self.exchange
        if exchange is not None:
            exchange.lost(exc)
        self._wake_drain()

    def _wake_drain(self) -> None:
        waiter = self._drain
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _check_read(self) -> None:
        """The read timer, every read timeout while an exchange is on: nothing read since
        the last time (and the reader not the slow one) fails the exchange. So a silent
        upstream is found after one to two read timeouts."""
        self._timer = None
        exchange = self.exchange
        if exchange is None or self.closed:
            return  # (idle: armed again by the next request)
        silent = self._reads == self._reads_seen
        if silent and not self._reading_paused and exchange.awaiting_upstream:
            exchange.fail(
                UpstreamTimeout(f"No answer from the upstream in {self._read_timeout:g} s.")
            )
            return
        self._reads_seen = self._reads
        self._timer = self.loop.call_later(self._read_timeout, self._check_read)
