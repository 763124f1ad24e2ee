"""The proxy's own HTTP/1.1 upstream client (s3proxy/upstream/http11.py and its modules,
docs/upstream-client.md) against real peers on loopback: moto, scripted asyncio servers (plain,
TLS, IPv6), a CONNECT proxy and a plain HTTP proxy written here, speaking the real protocols."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import socket
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from s3proxy.config import ConfigError, load
from s3proxy.config.proxies import ProxyEnvironment, bypassed
from s3proxy.core import certs
from s3proxy.core.errors import UpstreamUnavailable
from s3proxy.core.request import Target
from s3proxy.devstack import S3Server
from s3proxy.upstream import errors as upstream_errors
from s3proxy.upstream.addresses import Address, Addresses
from s3proxy.upstream.client import POOL_LIMIT, Upstream
from s3proxy.upstream.credentials import CredentialSource
from s3proxy.upstream.http11 import HttpClient, request_head
from s3proxy.upstream.httperrors import (
    UpstreamConnectionError,
    UpstreamPayloadError,
    UpstreamTimeout,
)
from s3proxy.upstream.pool import PoolLimits
from s3proxy.upstream.response import BUFFER_HIGH, Response

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
NO_PROXY = ProxyEnvironment()
via = ProxyEnvironment.of  # the proxy variables as read from an environment


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 30))


# ---- a scripted loopback server -------------------------------------------------------------


@dataclass
class Request:
    line: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


async def read_request(reader: asyncio.StreamReader, body: bool = True) -> Request:
    head = await reader.readuntil(b"\r\n\r\n")
    line, *rest = head[:-4].decode().split("\r\n")
    headers = [(k, v.strip()) for k, _, v in (h.partition(":") for h in rest)]
    request = Request(line, headers, b"")
    length = int(request.header("Content-Length") or 0)
    if body and length:
        request.body = await reader.readexactly(length)
    return request


def answer(status: int = 200, body: bytes = b"", *headers: str, reason: str = "OK") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


@dataclass
class Peer:
    port: int
    connections: list[asyncio.StreamWriter] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)


@asynccontextmanager
async def peer(
    handler: Handler, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> AsyncIterator[Peer]:
    found = Peer(0)

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        found.connections.append(writer)
        try:
            await handler(reader, writer, len(found.connections) - 1)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(accepted, host, 0, ssl=tls)
    found.port = server.sockets[0].getsockname()[1]
    try:
        yield found
    finally:
        server.close()
        for writer in found.connections:
            writer.close()


def serving(found: Callable[[], Peer], reply: Callable[[Request], bytes]) -> Handler:
    """A handler answering every request on a connection with ``reply(request)``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while True:
            request = await read_request(reader)
            found().requests.append(request)
            writer.write(reply(request))
            await writer.drain()

    return handler


@asynccontextmanager
async def answering(
    reply: Callable[[Request], bytes], host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> AsyncIterator[Peer]:
    box: list[Peer] = []
    async with peer(serving(lambda: box[0], reply), host, tls) as found:
        box.append(found)
        yield found


def client(port: int, scheme: str = "http", host: str = "127.0.0.1", **kw: Any) -> HttpClient:
    tls = kw.pop("tls", None)
    proxies = kw.pop("proxies", NO_PROXY)
    return HttpClient(f"{scheme}://{host}:{port}", tls, proxies, PoolLimits(**kw))


async def get_twice(port: int) -> list[tuple[int, bytes]]:
    """Two GETs, one after the other, through one client: each answer's status and body."""
    http = client(port)
    try:
        answers = []
        for _ in range(2):
            resp = await http.request("GET", "/b/k", [])
            answers.append((resp.status, await resp.read()))
        return answers
    finally:
        await http.close()


async def chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        await asyncio.sleep(0)
        yield piece


# ---- moto: the real S3 server of the other tests --------------------------------------------


def test_a_real_s3_server_through_the_client(s3: S3Server) -> None:
    """PUT (bytes and streamed), GET whole and ranged, HEAD, list, DELETE and an error
    against moto, signed, on one kept-alive connection."""
    bucket = f"h-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=bucket)
    data = bytes(range(256)) * 1024  # 256 KiB

    async def main() -> None:
        creds = CredentialSource.static(s3.access_key, s3.secret_key)
        await creds.start()
        upstream = Upstream(
            s3.endpoint,
            s3.region,
            creds,
        )
        await upstream.start()
        try:
            put = await upstream.send("PUT", Target(bucket, "whole", ()), [], data)
            async with put:
                assert put.status == 200 and put.headers["ETag"]
            streamed = chunks(data[:1000], data[1000:100_000], data[100_000:])
            put = await upstream.send(
                "PUT", Target(bucket, "streamed", ()), [], streamed, len(data)
            )
            put.release()
            assert put.status == 200
            for key in ("whole", "streamed"):
                got = await upstream.send("GET", Target(bucket, key, ()), [])
                assert got.status == 200 and got.content_length == len(data)
                assert await got.read() == data
            ranged = await upstream.send(
                "GET", Target(bucket, "whole", ()), [("Range", "bytes=10-19")]
            )
            assert ranged.status == 206 and await ranged.content.readexactly(10) == data[10:20]
            ranged.release()
            head = await upstream.send("HEAD", Target(bucket, "whole", ()), [])
            assert head.status == 200 and head.headers["Content-Length"] == str(len(data))
            assert await head.read() == b""
            listed = await upstream.send("GET", Target(bucket, None, (("list-type", "2"),)), [])
            assert b"<Key>streamed</Key>" in await listed.read()
            missing = await upstream.send("GET", Target(bucket, "none", ()), [])
            assert missing.status == 404 and b"NoSuchKey" in await missing.read()
            gone = await upstream.send("DELETE", Target(bucket, "whole", ()), [])
            assert gone.status == 204 and await gone.read() == b""
            # (moto's server closes each connection after its answer: HTTP/1.0)
            assert upstream._client is not None and upstream._client.pool.size <= 1
        finally:
            await upstream.close()
            await creds.close()

    run(main())


# ---- the request on the wire ---------------------------------------------------------------


def test_the_request_goes_as_given_with_no_header_of_the_clients_own() -> None:
    async def main() -> Request:
        async with answering(lambda r: answer(200)) as found:
            http = client(found.port)
            headers = [("Host", "example"), ("X-Amz-Meta-A", "é"), ("Content-Length", "3")]
            resp = await http.request("PUT", "/b/k%20x?tagging", headers, b"abc")
            resp.release()
            await http.close()
            return found.requests[0]

    request = run(main())
    assert request.line == "PUT /b/k%20x?tagging HTTP/1.1"
    assert request.headers == [("Host", "example"), ("X-Amz-Meta-A", "é"), ("Content-Length", "3")]
    assert request.body == b"abc"


def test_a_line_break_in_a_header_is_refused() -> None:
    with pytest.raises(ValueError):
        request_head("GET", "/", [("X-A", "1\r\nX-Injected: 2")])
    with pytest.raises(ValueError):
        request_head("GET", "/", [("X-A\n", "1")])
    assert request_head("GET", "/", [("X-A", "1")]) == b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n"


def test_a_large_bytes_body_goes_after_the_head() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB

    async def main() -> bytes:
        async with answering(lambda r: answer(200, b"ok")) as found:
            http = client(found.port)
            resp = await http.request("PUT", "/b/k", [("Content-Length", str(len(body)))], body)
            assert await resp.read() == b"ok"
            await http.close()
            return found.requests[0].body

    assert run(main()) == body


# ---- responses: framing, keep-alive --------------------------------------------------------


def test_a_chunked_response_is_read_and_the_connection_kept() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b"hello ", b"chunked ", b"world"):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")

    async def main() -> list[tuple[int, bytes]]:
        async with peer(handler) as found:
            answers = await get_twice(found.port)
            assert len(found.connections) == 1  # kept alive
            return answers

    assert run(main()) == [(200, b"hello chunked world")] * 2


def test_a_body_until_the_connection_closes() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        for piece in (b"no length ", b"until ", b"close"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.close()

    async def main() -> list[tuple[int, bytes]]:
        async with peer(handler) as found:
            answers = await get_twice(found.port)
            assert len(found.connections) == 2  # such a connection is never reused
            return answers

    assert run(main()) == [(200, b"no length until close")] * 2


def test_a_head_answer_has_no_body_and_the_connection_is_kept() -> None:
    def reply(request: Request) -> bytes:
        if request.line.startswith("HEAD"):
            return b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nETag: "e"\r\n\r\n'
        return answer(200, b"the body")

    async def main() -> None:
        async with answering(reply) as found:
            http = client(found.port)
            head = await http.request("HEAD", "/b/k", [])
            assert head.status == 200 and head.content_length == 1000
            assert await head.read() == b""
            got = await http.request("GET", "/b/k", [])
            assert await got.read() == b"the body"
            assert len(found.connections) == 1
            await http.close()

    run(main())


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body(status: int) -> None:
    async def main() -> None:
        reply = f'HTTP/1.1 {status} X\r\nETag: "e"\r\n\r\n'.encode()
        async with answering(lambda r: reply) as found:
            assert await get_twice(found.port) == [(status, b"")] * 2
            assert len(found.connections) == 1

    run(main())


def test_a_redirect_is_returned_as_it_is() -> None:
    async def main() -> None:
        reply = answer(301, b"", "Location: http://elsewhere.invalid/", reason="Moved")
        async with answering(lambda r: reply) as found:
            http = client(found.port)
            resp = await http.request("GET", "/b/k", [])
            assert (resp.status, resp.reason) == (301, "Moved")
            assert resp.headers["Location"] == "http://elsewhere.invalid/"
            assert len(found.requests) == 1
            await http.close()

    run(main())


def test_connection_close_from_the_upstream_is_honoured() -> None:
    async def main() -> None:
        async with answering(lambda r: answer(200, b"x", "Connection: close")) as found:
            assert await get_twice(found.port) == [(200, b"x")] * 2
            assert len(found.connections) == 2

    run(main())


def test_a_released_partial_body_closes_a_read_one_keeps_the_connection() -> None:
    big = b"x" * 100_000

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big))
            writer.write(big[:10])
            await writer.drain()
            await asyncio.sleep(0.2 if n == 0 else 0)  # the first: the rest comes later
            writer.write(big[10:])
            await writer.drain()

    async def main() -> None:
        async with peer(handler) as found:
            http = client(found.port)
            resp = await http.request("GET", "/b/k", [])
            assert await resp.content.read(10) == b"x" * 10
            resp.release()  # not drained: closed
            with pytest.raises(UpstreamPayloadError):
                await resp.content.read(10)
            resp = await http.request("GET", "/b/k", [])
            assert len(found.connections) == 2
            async with resp:
                pieces = [c async for c in resp.content.iter_chunked(30_000)]
            assert b"".join(pieces) == big and max(map(len, pieces)) <= 30_000
            resp = await http.request("GET", "/b/k", [])
            assert await resp.read() == big
            assert len(found.connections) == 2  # a body read whole keeps its connection
            await http.close()

    run(main())


def test_a_body_cut_short_is_a_payload_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 500)
        await writer.drain()
        writer.transport.abort()

    async def main() -> None:
        async with peer(handler) as found:
            http = client(found.port)
            resp = await http.request("GET", "/b/k", [])
            with pytest.raises(UpstreamPayloadError):
                await resp.read()
            with pytest.raises(UpstreamUnavailable), upstream_errors.reading():
                await resp.content.readexactly(1000)
            await http.close()

    run(main())


def test_readexactly_past_a_whole_body_is_an_incomplete_read() -> None:
    async def main() -> None:
        async with answering(lambda r: answer(200, b"short")) as found:
            http = client(found.port)
            resp = await http.request("GET", "/b/k", [])
            with pytest.raises(asyncio.IncompleteReadError):
                await resp.content.readexactly(10)
            await http.close()

    run(main())


def test_a_large_unread_body_is_not_all_buffered() -> None:
    big = bytes(range(256)) * 16 * 1024  # 4 MiB

    async def main() -> None:
        async with answering(lambda r: answer(200, big)) as found:
            http = client(found.port)
            resp = await http.request("GET", "/b/k", [])
            await asyncio.sleep(0.3)  # the upstream would send it all meanwhile
            held = resp.content._size
            assert held <= BUFFER_HIGH + 256 * 1024, held
            assert await resp.read() == big
            await http.close()

    run(main())


# ---- a request the upstream answers early, and failing request bodies --------------------------


def test_an_answer_before_the_body_was_sent_is_returned() -> None:
    """As aiohttp: the store refuses at once (403) while the body streams; the caller gets
    the 403, and the body stops."""
    taken: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for i in range(1000):
            taken.append(i)
            await asyncio.sleep(0.01)
            yield b"x" * 1000

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader, body=False)
        writer.write(answer(403, b"<Error><Code>AccessDenied</Code></Error>", reason="Forbidden"))
        await writer.drain()
        await asyncio.sleep(5)

    async def main() -> None:
        async with peer(handler) as found:
            http = client(found.port)
            resp = await http.request("PUT", "/b/k", [("Content-Length", "1000000")], body())
            assert resp.status == 403 and b"AccessDenied" in await resp.read()
            await asyncio.sleep(0.1)
            count = len(taken)
            await asyncio.sleep(0.1)
            assert len(taken) == count < 1000  # the body stopped
            await http.close()

    run(main())


def test_a_failing_body_closes_the_connection_and_the_request_fails() -> None:
    class Broken(Exception):
        pass

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        raise Broken()

    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader, body=False)
        received.append(await reader.read())  # until the client closes

    async def main() -> None:
        async with peer(handler) as found:
            http = client(found.port)
            with pytest.raises(UpstreamConnectionError) as info:
                await http.request("PUT", "/b/k", [("Content-Length", "2000")], body())
            assert isinstance(info.value.__cause__, Broken)
            with pytest.raises(UpstreamUnavailable), upstream_errors.sending():
                await http.request("PUT", "/b/k", [("Content-Length", "2000")], body())
            await asyncio.sleep(0.1)
            await http.close()

    run(main())
    assert received and all(len(r) < 2000 for r in received)


def test_streamed_bodies_are_flow_controlled() -> None:
    """A slow upstream: the body is asked for no faster than the connection takes it."""
    produced = [0]

    async def body() -> AsyncIterator[bytes]:
        for _ in range(64):
            produced[0] += 1
            yield b"y" * 256 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader, body=False)
        await asyncio.sleep(0.3)  # read nothing for a while
        ahead = produced[0]
        await reader.readexactly(64 * 256 * 1024)
        writer.write(answer(200, str(ahead).encode()))

    async def main() -> int:
        async with peer(handler) as found:
            http = client(found.port)
            length = str(64 * 256 * 1024)
            resp = await http.request("PUT", "/b/k", [("Content-Length", length)], body())
            ahead = int(await resp.read())
            await http.close()
            return ahead

    assert run(main()) < 32  # far from all 64 pieces (16 MiB) while nothing was read


# ---- stale kept-alive connections -------------------------------------------------------------


def stale_second(found: Callable[[], Peer]) -> Handler:
    """The first connection answers one request, then closes when the next one comes (as a
    server whose keep-alive timeout passed just then); later connections answer."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        first = True
        while True:
            request = await read_request(reader, body=not (n == 0 and not first))
            found().requests.append(request)
            if n == 0 and not first:
                writer.transport.abort()
                return
            first = False
            writer.write(answer(200, request.line.encode()))
            await writer.drain()

    return handler


@pytest.mark.parametrize("body", [None, b"abc"])
def test_a_stale_kept_alive_connection_is_retried_once(body: bytes | None) -> None:
    async def main() -> None:
        box: list[Peer] = []
        async with peer(stale_second(lambda: box[0])) as found:
            box.append(found)
            http = client(found.port)
            headers = [("Content-Length", "3")] if body else []
            resp = await http.request("PUT", "/b/one", headers, body)
            assert await resp.read() == b"PUT /b/one HTTP/1.1"
            resp = await http.request("PUT", "/b/two", headers, body)
            assert await resp.read() == b"PUT /b/two HTTP/1.1"
            assert len(found.connections) == 2
            assert [r.line for r in found.requests] == [
                f"PUT /b/{k} HTTP/1.1" for k in ("one", "two", "two")
            ]
            await http.close()

    run(main())


def test_a_stream_already_read_from_is_not_sent_again() -> None:
    async def main() -> None:
        box: list[Peer] = []
        async with peer(stale_second(lambda: box[0])) as found:
            box.append(found)
            http = client(found.port)
            resp = await http.request("GET", "/b/one", [])
            assert await resp.read() == b"GET /b/one HTTP/1.1"
            pieces = chunks(b"a" * 1000, b"b" * 1000)
            with pytest.raises(UpstreamConnectionError):
                await http.request("PUT", "/b/two", [("Content-Length", "2000")], pieces)
            assert len(found.connections) == 1 and len(found.requests) == 2
            # a stream not yet read from is sent again
            resp = await http.request("GET", "/b/three", [])
            assert await resp.read() == b"GET /b/three HTTP/1.1"
            await http.close()

    run(main())


def test_an_idle_connection_the_upstream_closed_is_not_handed_out() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(answer(200, b"once"))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()  # a keep-alive timeout on the upstream's side

    async def main() -> None:
        async with peer(handler) as found:
            http = client(found.port)
            for _ in range(3):
                resp = await http.request("GET", "/b/k", [])
                assert await resp.read() == b"once"
                await asyncio.sleep(0.2)
                assert http.pool.idle == 0  # dropped when it closed
            assert len(found.connections) == 3
            await http.close()

    run(main())


def test_idle_connections_are_closed_after_the_idle_timeout() -> None:
    async def main() -> None:
        async with answering(lambda r: answer(200, b"x")) as found:
            http = client(found.port, idle_timeout=0.3)
            resp = await http.request("GET", "/b/k", [])
            await resp.read()
            assert http.pool.idle == 1
            await asyncio.sleep(0.6)
            assert http.pool.idle == 0 and http.pool.size == 0
            await http.close()

    run(main())


# ---- the pool's limit and the timeouts ----------------------------------------------------------


def test_the_pool_opens_at_most_its_limit_and_the_next_request_waits() -> None:
    async def main() -> None:
        release = asyncio.Event()
        served = [0]

        async def handler(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int
        ) -> None:
            while True:
                await read_request(reader)
                served[0] += 1
                await release.wait()
                writer.write(answer(200, b"x"))
                await writer.drain()

        async with peer(handler) as found:
            http = client(found.port, limit=POOL_LIMIT)

            async def one() -> bytes:
                resp = await http.request("GET", "/b/k", [])
                return await resp.read()

            tasks = [asyncio.create_task(one()) for _ in range(POOL_LIMIT + 1)]
            for _ in range(200):
                if served[0] == POOL_LIMIT:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
            assert served[0] == POOL_LIMIT and http.pool.size == POOL_LIMIT
            assert sum(t.done() for t in tasks) == 0
            release.set()
            assert await asyncio.gather(*tasks) == [b"x"] * (POOL_LIMIT + 1)
            assert len(found.connections) == POOL_LIMIT and served[0] == POOL_LIMIT + 1
            await http.close()

    run(main())


def test_waiting_for_a_connection_past_the_connect_timeout_fails() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def handler(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int
        ) -> None:
            await read_request(reader)
            await release.wait()

        async with peer(handler) as found:
            http = client(found.port, limit=1, connect_timeout=0.3)
            first = asyncio.create_task(http.request("GET", "/b/k", []))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await http.request("GET", "/b/k", [])
            assert 0.15 < time.monotonic() - started < 1.0
            with pytest.raises(UpstreamUnavailable), upstream_errors.sending():
                await http.request("GET", "/b/k", [])
            first.cancel()
            release.set()
            await http.close()

    run(main())


def test_a_connect_that_hangs_times_out() -> None:
    """A listener whose backlog is full drops further SYNs: the TCP connect hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        with suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.2)

    async def main() -> float:
        http = client(port, dial_timeout=0.4)
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await http.request("GET", "/b/k", [])
        await http.close()
        return time.monotonic() - started

    try:
        assert 0.3 < run(main()) < 2.0
    finally:
        for s in [*fillers, listener]:
            s.close()


def test_a_refused_connection_is_a_connection_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()

    async def main() -> None:
        http = client(port)
        with pytest.raises(UpstreamConnectionError):
            await http.request("GET", "/b/k", [])
        with pytest.raises(UpstreamUnavailable), upstream_errors.sending():
            await http.request("GET", "/b/k", [])
        await http.close()

    run(main())


def test_an_upstream_silent_past_the_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 1:  # the second connection: the head, half the body, then silence
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
        await asyncio.sleep(10)

    async def main() -> None:
        async with peer(handler) as found:
            http = client(found.port, read_timeout=0.3)
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await http.request("GET", "/b/k", [])
            assert 0.25 < time.monotonic() - started < 1.0
            resp = await http.request("GET", "/b/k", [])
            assert await resp.content.read(5) == b"12345"
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await resp.read()
            assert time.monotonic() - started < 1.0
            await http.close()

    run(main())


def test_a_slow_reader_is_not_the_upstreams_timeout() -> None:
    big = b"z" * (4 * BUFFER_HIGH)

    async def main() -> None:
        async with answering(lambda r: answer(200, big)) as found:
            http = client(found.port, read_timeout=0.2)
            resp = await http.request("GET", "/b/k", [])
            await asyncio.sleep(0.7)  # reading paused meanwhile: not the upstream's silence
            assert await resp.read() == big
            await http.close()

    run(main())


# ---- TLS -----------------------------------------------------------------------------------


def _server_context(made: certs.GeneratedCertificate, tmp: Path) -> ssl.SSLContext:
    (tmp / "tls.crt").write_bytes(made.cert_pem)
    (tmp / "tls.key").write_bytes(made.key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp / "tls.crt", tmp / "tls.key")
    return context


def _foreign_pair(tmp: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context whose self-signed certificate names only ``elsewhere.example``, and
    that certificate (to trust it as a CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "elsewhere.example")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("elsewhere.example")]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp / "foreign.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "foreign.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp / "foreign.crt", tmp / "foreign.key")
    return context, tmp / "foreign.crt"


def test_tls_with_a_ca_bundle_sni_and_the_host_name_checked(tmp_path: Path) -> None:
    made = certs.generate()
    (tmp_path / "ca.pem").write_bytes(made.ca_pem)
    server = _server_context(made, tmp_path)
    names: list[str | None] = []
    server.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,misc,return-value]

    async def main() -> None:
        async with answering(lambda r: answer(200, b"secure"), tls=server) as found:
            creds = CredentialSource.static("AKIDEXAMPLE", "secret")
            await creds.start()
            ca = str(tmp_path / "ca.pem")
            upstream = Upstream(
                f"https://localhost:{found.port}",
                "us-east-1",
                creds,
                ca_bundle=ca,
            )
            await upstream.start()
            resp = await upstream.send("GET", Target("b", "k", ()), [])
            assert await resp.read() == b"secure"
            assert found.requests[0].header("Host") == f"localhost:{found.port}"
            await upstream.close()
            # the system's CAs do not know this one
            plain = Upstream(
                f"https://localhost:{found.port}",
                "us-east-1",
                creds,
            )
            await plain.start()
            with pytest.raises(UpstreamUnavailable):
                await plain.send("GET", Target("b", "k", ()), [])
            await plain.close()
            await creds.close()

    run(main())
    assert names[0] == "localhost"


def test_tls_to_a_host_the_certificate_does_not_name_is_refused(tmp_path: Path) -> None:
    server, cert = _foreign_pair(tmp_path)

    async def main() -> None:
        async with answering(lambda r: answer(200, b"x"), tls=server) as found:
            trusting = ssl.create_default_context(cafile=str(cert))
            http = client(found.port, "https", "localhost", tls=trusting)
            with pytest.raises(UpstreamConnectionError) as info:
                await http.request("GET", "/b/k", [])
            assert "certificate" in str(info.value)
            await http.close()
            assert found.requests == []

    run(main())


# ---- proxies --------------------------------------------------------------------------------


@dataclass
class ConnectProxy:
    port: int
    seen: list[Request] = field(default_factory=list)


@asynccontextmanager
async def connect_proxy(auth: str | None = None) -> AsyncIterator[ConnectProxy]:
    """A forward proxy that speaks ``CONNECT`` (and asks for ``auth`` if given), relaying the
    tunnel's bytes both ways."""
    box: list[ConnectProxy] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        request = await read_request(reader)
        box[0].seen.append(request)
        method, authority, _version = request.line.split(" ")
        if auth is not None and request.header("Proxy-Authorization") != auth:
            writer.write(answer(407, b"", 'Proxy-Authenticate: Basic realm="p"', reason="Auth"))
            return
        assert method == "CONNECT"
        host, _, port = authority.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async with peer(handler) as found:
        box.append(ConnectProxy(found.port))
        yield box[0]


def test_an_https_endpoint_through_a_connect_proxy(tmp_path: Path) -> None:
    made = certs.generate()
    (tmp_path / "ca.pem").write_bytes(made.ca_pem)
    server = _server_context(made, tmp_path)
    auth = "Basic " + base64.b64encode(b"user:p@ss word").decode()

    async def main() -> None:
        async with (
            answering(lambda r: answer(200, b"tunnelled"), tls=server) as found,
            connect_proxy(auth) as proxy,
        ):
            creds = CredentialSource.static("AKIDEXAMPLE", "secret")
            await creds.start()
            environ = {"HTTPS_PROXY": f"http://user:p%40ss%20word@127.0.0.1:{proxy.port}"}
            upstream = Upstream(
                f"https://localhost:{found.port}",
                "us-east-1",
                creds,
                ca_bundle=str(tmp_path / "ca.pem"),
                proxies=via(environ),
            )
            await upstream.start()
            for _ in range(2):
                resp = await upstream.send("GET", Target("b", "k", ()), [])
                assert await resp.read() == b"tunnelled"
            assert [r.line for r in proxy.seen] == [f"CONNECT localhost:{found.port} HTTP/1.1"]
            assert proxy.seen[0].header("Host") == f"localhost:{found.port}"
            # inside the tunnel the request is an origin-form one, without proxy credentials
            assert found.requests[0].line == "GET /b/k HTTP/1.1"
            assert found.requests[0].header("Proxy-Authorization") is None
            await upstream.close()
            # wrong credentials: the proxy's refusal is a connection error (503)
            environ = {"https_proxy": f"http://user:wrong@127.0.0.1:{proxy.port}"}
            await _refused(f"https://localhost:{found.port}", creds, environ)
            await creds.close()

    run(main())


async def _refused(endpoint: str, creds: CredentialSource, environ: dict[str, str]) -> None:
    """A GET to ``endpoint`` with ``environ``'s proxy settings fails as a connection error
    (503)."""
    upstream = Upstream(endpoint, "us-east-1", creds, proxies=via(environ))
    await upstream.start()
    try:
        with pytest.raises(UpstreamUnavailable):
            await upstream.send("GET", Target("b", "k", ()), [])
    finally:
        await upstream.close()


def test_an_http_endpoint_through_an_http_proxy_in_absolute_form() -> None:
    async def main() -> None:
        async with answering(lambda r: answer(200, b"via proxy")) as proxy:
            creds = CredentialSource.static("AKIDEXAMPLE", "secret")
            await creds.start()
            environ = {"HTTP_PROXY": f"http://u:pw@127.0.0.1:{proxy.port}"}
            # a name that does not resolve: only the proxy is connected to
            upstream = Upstream(
                "http://s3.example.invalid:9000",
                "us-east-1",
                creds,
                proxies=via(environ),
            )
            await upstream.start()
            resp = await upstream.send("GET", Target("bkt", "a b", ()), [])
            assert await resp.read() == b"via proxy"
            request = proxy.requests[0]
            assert request.line == "GET http://s3.example.invalid:9000/bkt/a%20b HTTP/1.1"
            assert request.header("Host") == "s3.example.invalid:9000"
            assert (
                request.header("Proxy-Authorization")
                == "Basic " + base64.b64encode(b"u:pw").decode()
            )
            await upstream.close()
            await creds.close()

    run(main())


def test_no_proxy_sends_the_request_directly() -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()

    async def main() -> None:
        async with answering(lambda r: answer(200, b"direct")) as found:
            creds = CredentialSource.static("AKIDEXAMPLE", "secret")
            await creds.start()
            for host, no_proxy in (
                ("localhost", "localhost"),
                ("localhost", ".localhost"),
                ("127.0.0.1", "127.0.0.0/8"),
                ("127.0.0.1", "127.0.0.1"),
                ("localhost", f"localhost:{found.port}"),
                ("localhost", "*"),
            ):
                environ = {
                    "HTTP_PROXY": f"127.0.0.1:{dead_port}",
                    "NO_PROXY": f"x.example,{no_proxy}",
                }
                upstream = Upstream(
                    f"http://{host}:{found.port}",
                    "us-east-1",
                    creds,
                    proxies=via(environ),
                )
                await upstream.start()
                resp = await upstream.send("GET", Target("b", "k", ()), [])
                assert await resp.read() == b"direct"
                await upstream.close()
            # not bypassed: the dead proxy is tried
            environ = {"HTTP_PROXY": f"127.0.0.1:{dead_port}", "NO_PROXY": "other.example"}
            await _refused(f"http://localhost:{found.port}", creds, environ)
            await creds.close()

    run(main())


def test_the_proxy_variables_as_botocore_reads_them() -> None:
    env = ProxyEnvironment.of(
        {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2", "no_proxy": "a.example"}
    )
    assert env.https == "http://lower:2" and env.no_proxy == "a.example"
    assert ProxyEnvironment.of({"HTTP_PROXY": "p:3", "REQUEST_METHOD": "GET"}).http is None
    assert ProxyEnvironment.of({"http_proxy": "p:3", "REQUEST_METHOD": "GET"}).http == "p:3"
    proxy = ProxyEnvironment.of({"HTTP_PROXY": "proxy.example:3128"}).proxy_for("http", "h", 80)
    assert proxy is not None and (proxy.host, proxy.port, proxy.authorization) == (
        "proxy.example",
        3128,
        None,
    )
    assert ProxyEnvironment.of({"HTTP_PROXY": "p:1"}).proxy_for("https", "h", 443) is None
    with pytest.raises(ValueError):
        ProxyEnvironment.of({"HTTPS_PROXY": "https://p:1"}).proxy_for("https", "h", 443)
    assert bypassed("*", "anything", 1)
    assert bypassed("example.com", "s3.example.com", 443)
    assert bypassed(".example.com", "example.com", 443)
    assert not bypassed("example.com", "badexample.com", 443)
    assert bypassed("example.com:9000", "example.com", 9000)
    assert not bypassed("example.com:9000", "example.com", 443)
    assert bypassed("10.0.0.0/8", "10.1.2.3", 80)
    assert not bypassed("10.0.0.0/8", "11.1.2.3", 80)
    assert bypassed("192.168.1.5", "192.168.1.5", 80)
    assert bypassed("::1", "::1", 80) and bypassed("[::1]:80", "::1", 80)
    assert not bypassed("", "example.com", 80)


# ---- IPv6 ----------------------------------------------------------------------------------


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="::1 cannot be bound here")
def test_an_ipv6_literal_endpoint() -> None:
    async def main() -> None:
        async with answering(lambda r: answer(200, b"six"), host="::1") as found:
            creds = CredentialSource.static("AKIDEXAMPLE", "secret")
            await creds.start()
            upstream = Upstream(
                f"http://[::1]:{found.port}",
                "us-east-1",
                creds,
            )
            await upstream.start()
            resp = await upstream.send("GET", Target("b", "k", ()), [])
            assert await resp.read() == b"six"
            assert found.requests[0].header("Host") == f"[::1]:{found.port}"
            await upstream.close()
            await creds.close()

    run(main())


def test_a_response_dropped_unreleased_frees_its_connection() -> None:
    async def main() -> None:
        async with answering(lambda r: answer(200, b"x" * 100_000)) as found:
            http = client(found.port, limit=1, connect_timeout=2)
            resp: Response | None = await http.request("GET", "/b/k", [])
            assert resp is not None
            await resp.content.read(10)
            resp = None  # (no release)
            again = await http.request("GET", "/b/k", [])
            assert len(await again.read()) == 100_000
            await http.close()

    run(main())


def test_the_proxy_variables_are_read_with_the_settings() -> None:
    base = {"S3PROXY_VAULT_TRANSIT_KEY": "k", "VAULT_ADDR": "http://127.0.0.1:8200"}
    base |= {"VAULT_TOKEN": "t", "S3PROXY_S3_ENDPOINT": "https://s3.example:9000"}
    config = load({**base, "HTTPS_PROXY": "proxy.internal:3128", "NO_PROXY": ".svc"})
    proxy = config.upstream.proxies.proxy_for("https", "s3.example", 9000)
    assert proxy is not None and (proxy.host, proxy.port) == ("proxy.internal", 3128)
    assert load(base).upstream.proxies.proxy_for("https", "s3.example", 9000) is None
    with pytest.raises(ConfigError, match="HTTPS_PROXY"):
        load({**base, "HTTPS_PROXY": "https://proxy.internal:3128"})
    # a proxy for the other scheme, or one NO_PROXY bypasses, is not this proxy's concern
    load({**base, "HTTP_PROXY": "https://proxy.internal:3128"})
    load({**base, "HTTPS_PROXY": "https://proxy.internal:3128", "NO_PROXY": "example"})


def test_host_names_are_looked_up_once_a_minute_for_many_connections() -> None:
    async def main() -> tuple[int, list[list[Address]]]:
        loop = asyncio.get_running_loop()
        calls = [0]
        real = loop.getaddrinfo

        async def counted(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            return await real(*args, **kwargs)

        loop.getaddrinfo = counted  # type: ignore[method-assign]
        addresses = Addresses(ttl=60)
        found = await asyncio.gather(*(addresses.of("localhost", 80) for _ in range(8)))
        found.append(await addresses.of("localhost", 80))
        assert await addresses.of("127.0.0.1", 80) == [(socket.AF_INET, "127.0.0.1")]
        return calls[0], found

    calls, found = run(main())
    assert calls == 1
    assert all(f == found[0] for f in found) and "127.0.0.1" in {a for _, a in found[0]}
