"""The proxy's HTTP/1.1 client for its one upstream endpoint: a request's head written as one
piece of bytes, its body after it (bytes, or a stream of exactly its ``Content-Length``, never
chunked), the response handed back once its head is in (docs/upstream-client.md).

It adds no header of its own (no ``User-Agent``, ``Accept-Encoding`` or ``Content-Type``),
keeps no cookies, follows no redirect and decompresses nothing: the request goes out as signed
and the answer comes back as sent."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterable
from urllib.parse import urlsplit

from s3proxy.config.proxies import ProxyEnvironment
from s3proxy.upstream.connection import Connection
from s3proxy.upstream.dial import Dialer
from s3proxy.upstream.exchange import Exchange
from s3proxy.upstream.httperrors import StaleConnection, UpstreamConnectionError
from s3proxy.upstream.pool import DEFAULT_LIMITS, Pool, PoolLimits
from s3proxy.upstream.response import Response

RequestBody = bytes | AsyncIterator[bytes] | AsyncIterator[bytes | bytearray | memoryview] | None
WHOLE_WRITE = 64 * 1024  # a bytes body up to this size goes out in the head's write


class HttpClient:
    """Requests to one endpoint (``http://`` or ``https://``) over a pool of kept-alive
    connections. A request that meets a kept-alive connection the upstream had closed (no
    byte of an answer) is sent once more on a new connection, if its body can be sent again:
    none, bytes, or a stream not yet read from."""

    def __init__(
        self,
        endpoint: str,
        tls: ssl.SSLContext | None,
        proxies: ProxyEnvironment,
        limits: PoolLimits = DEFAULT_LIMITS,
    ) -> None:
        parts = urlsplit(endpoint)
        https = parts.scheme == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if https else 80)
        proxy = proxies.proxy_for(parts.scheme, host, port)
        self.dialer = Dialer(host, port, tls if https else None, proxy)
        self.pool = Pool(self.dialer, limits)
        self._origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    async def request(
        self, method: str, path: str, headers: Iterable[tuple[str, str]], body: RequestBody = None
    ) -> Response:
        """Send ``method path`` with exactly ``headers``; the response once its head is in."""
        target = self._origin + path if self.dialer.absolute_form else path
        head = request_head(method, target, headers, self.dialer.extra_header)
        again = body is None or isinstance(body, bytes)
        fresh = False
        while True:
            conn = await self.pool.acquire(fresh)
            exchange = conn.begin(method == "HEAD")
            try:
                _send(conn, exchange, head, body)
                return await exchange.head
            except StaleConnection:
                if fresh or not (again or not exchange.taken):
                    raise
                fresh = True  # once, on a new connection
                exchange.release()
            except BaseException:
                exchange.release()
                raise

    async def close(self) -> None:
        await self.pool.close()


def request_head(
    method: str, target: str, headers: Iterable[tuple[str, str]], extra: str = ""
) -> bytes:
    """The request line and headers as one piece of bytes (UTF-8, as aiohttp sends them); a
    line break inside a name or value is refused."""
    lines = [f"{method} {target} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers]
    text = "\r\n".join(lines) + "\r\n" + extra + "\r\n"
    breaks = len(lines) + 1 + extra.count("\n")
    if text.count("\n") != breaks or text.count("\r") != breaks:
        raise ValueError("a line break in a request header")
    return text.encode("utf-8")


def _send(conn: Connection, exchange: Exchange, head: bytes, body: RequestBody) -> None:
    """Write the request: bytes at once, a stream from a task of its own (so an answer that
    comes before the body is sent whole is seen, as aiohttp does)."""
    if body is None or isinstance(body, bytes):
        if body and len(body) > WHOLE_WRITE:
            conn.write(head)
            conn.write(body)
        else:
            conn.write(head + body if body else head)
        conn.request_sent(exchange)
        return
    conn.write(head)
    exchange.pump = conn.loop.create_task(_pump(conn, exchange, body))


async def _pump(
    conn: Connection,
    exchange: Exchange,
    body: AsyncIterator[bytes] | AsyncIterator[bytes | bytearray | memoryview],
) -> None:
    """Send a streamed body, flow-controlled. If the body fails (or the connection does), the
    connection is closed with the request short, and the sender gets the failure."""
    try:
        while True:
            exchange.taken = True
            try:
                piece = await body.__anext__()
            except StopAsyncIteration:
                break
            if conn.closed:
                raise UpstreamConnectionError("The upstream closed the connection.")
            conn.write(piece)
            if conn.write_paused:
                await conn.drain()
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        failure = UpstreamConnectionError(f"The request body was not sent ({exc!r}).")
        failure.__cause__ = exc
        exchange.fail(failure)
        return
    conn.request_sent(exchange)
