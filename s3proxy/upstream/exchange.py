"""One request and its response on a connection: the response parsed with llhttp (httptools)
as it arrives, its head handed to the sender, its body to the reader; and who holds the
connection until the exchange is over."""

from __future__ import annotations

import asyncio
from typing import Protocol

from httptools import HttpParserError, HttpResponseParser
from multidict import CIMultiDict, CIMultiDictProxy

from s3proxy.upstream.httperrors import (
    StaleConnection,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamPayloadError,
    UpstreamProtocolError,
)
from s3proxy.upstream.response import Body, Response


class Wire(Protocol):
    """What an exchange needs of its connection."""

    reused: bool
    loop: asyncio.AbstractEventLoop

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def broken(self) -> None: ...

    def finished(self, exchange: Exchange, reusable: bool) -> None: ...


class Exchange:
    """The parser's callbacks for one response, and the state of its request. The connection
    is held until the response has arrived whole (then it goes back, if both sides keep it
    alive and the request went out whole) or the exchange fails or is let go (then it is
    closed)."""

    __slots__ = (
        "_body",
        "_complete",
        "_head_only",
        "_held",
        "_interim",
        "_parser",
        "_raw",
        "_reason",
        "_until_close",
        "_wire",
        "head",
        "pump",
        "received",
        "response",
        "sent",
        "taken",
    )

    def __init__(self, wire: Wire, head_only: bool, loop: asyncio.AbstractEventLoop) -> None:
        self._wire = wire
        self._head_only = head_only
        self._parser: HttpResponseParser | None = HttpResponseParser(self)
        self._raw: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._interim = False
        self._complete = False
        self._until_close = False
        self._held = True
        self._body: Body | None = None
        self.head: asyncio.Future[Response] = loop.create_future()
        self.response: Response | None = None
        self.received = False  # a byte of the response arrived
        self.sent = False  # the request went out whole
        self.taken = False  # a piece of a streamed body was asked for
        self.pump: asyncio.Task[None] | None = None

    # -- bytes from the connection ---------------------------------------------------------

    def feed(self, data: bytes | memoryview) -> None:
        self.received = True
        parser = self._parser
        if parser is None:
            return
        try:
            parser.feed_data(data)
        except HttpParserError as exc:
            failure = UpstreamProtocolError(f"The upstream's answer is not HTTP/1.1 ({exc}).")
            failure.__cause__ = exc
            self.fail(failure)

    def on_message_begin(self) -> None:
        if self._complete:
            self._wire.broken()  # bytes after the response: the connection is not reused

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        if self._complete or parser is None:
            return  # (a second answer: the connection is broken already)
        status = parser.get_status_code()
        if status < 200:  # 100 Continue and other interim answers: the answer follows
            if status == 101:
                raise UpstreamProtocolError("The upstream switched protocols.")
            self._interim = True
            self._raw = []
            self._reason = b""
            return
        headers = CIMultiDictProxy(
            CIMultiDict(
                [
                    (n.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
                    for n, v in self._raw
                ]
            )
        )
        body = self._body = Body(self._wire)
        reason = self._reason.decode("utf-8", "surrogateescape")
        response = self.response = Response(status, reason, headers, body, self)
        if self._head_only or status in (204, 304):
            self._until_close = False
        else:
            self._until_close = "Content-Length" not in headers and "chunked" not in (
                headers.get("Transfer-Encoding", "").lower()
            )
        if not self.head.done():
            self.head.set_result(response)
        if self._head_only:
            self._finish()

    def on_body(self, data: bytes) -> None:
        if self._complete or self._body is None:
            self._wire.broken()  # a body after a HEAD's answer
        elif self._held:
            self._body.feed(data)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        elif not self._complete and self._held:
            self._finish()

    def _finish(self) -> None:
        self._complete = True
        parser = self._parser
        keep = parser is not None and parser.should_keep_alive() and not self._until_close
        assert self._body is not None
        self._body.feed_eof()
        pump = self.pump
        if pump is not None and not pump.done():
            pump.cancel()  # answered before the request was sent whole (as aiohttp does)
            keep = False
        self._let_go(keep and self.sent)

    # -- the end of the connection, failures ---------------------------------------------

    def lost(self, exc: BaseException | None) -> None:
        """The connection ended (``exc`` None: the upstream closed it)."""
        if self._complete or not self._held:
            return
        failure: UpstreamError
        if self.response is None:
            if not self.received and self._wire.reused:
                failure = StaleConnection("The upstream closed a kept-alive connection.")
            else:
                failure = UpstreamConnectionError("The upstream closed the connection unanswered.")
            failure.__cause__ = exc
            self.fail(failure)
        elif self._until_close and exc is None:
            self._finish()
        else:
            failure = UpstreamPayloadError("The upstream's response broke off.")
            failure.__cause__ = exc
            self.fail(failure)

    def fail(self, failure: UpstreamError) -> None:
        """The exchange cannot go on: the sender or the reader gets ``failure``."""
        if self._complete or not self._held:
            return
        if self.response is None:
            if not self.head.done():
                self.head.set_exception(failure)
        elif self._body is not None:
            self._body.set_error(failure)
        pump = self.pump
        if pump is not None and not pump.done() and pump is not asyncio.current_task():
            pump.cancel()
        self._let_go(False)

    def body_sent(self) -> None:
        self.sent = True

    def release(self) -> None:
        """The response (or the sender) lets go: a connection still held is closed."""
        if self._held:
            pump = self.pump
            if pump is not None and not pump.done() and pump is not asyncio.current_task():
                pump.cancel()
            self._let_go(False)
        if not self.head.done():
            self.head.cancel()

    def _let_go(self, reusable: bool) -> None:
        if self._held:
            self._held = False
            # no reference cycles left (parser and exchange, exchange and response): all of
            # it is freed by reference counting, none waits for the garbage collector
            self._parser = None
            response, self.response = self.response, None
            if response is not None:
                response.detach()
            self._wire.finished(self, reusable)

    @property
    def awaiting_upstream(self) -> bool:
        """The request is out (or answered) and the response not whole: the read timeout
        runs."""
        return self._held and (self.sent or self.response is not None)
