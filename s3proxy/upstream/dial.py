"""Opening a connection to the upstream endpoint: directly, through an HTTP proxy (an http
endpoint: the proxy takes requests in absolute form), or through a proxy's ``CONNECT`` tunnel
(an https endpoint: TLS to the endpoint inside the tunnel). TLS verifies the endpoint's
certificate and host name, with SNI."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import TypeVar

from s3proxy.config.proxies import Proxy
from s3proxy.upstream.addresses import Addresses
from s3proxy.upstream.connection import Connection
from s3proxy.upstream.httperrors import (
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamTimeout,
)

P = TypeVar("P", bound=asyncio.BaseProtocol)
_TUNNEL_REPLY_LIMIT = 16 * 1024  # bytes of a proxy's answer to CONNECT


class Dialer:
    """Opens connections to ``host:port`` (TLS with ``tls``), through ``proxy`` if given."""

    def __init__(
        self, host: str, port: int, tls: ssl.SSLContext | None, proxy: Proxy | None
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.proxy = proxy
        self.addresses = Addresses()
        # An http endpoint through a proxy: requests name the whole URL, and carry the
        # proxy's credentials (a CONNECT tunnel carries them once, in the CONNECT).
        self.absolute_form = proxy is not None and tls is None
        authorization = proxy.authorization if proxy is not None else None
        self.extra_header = (
            f"Proxy-Authorization: {authorization}\r\n"
            if self.absolute_form and authorization
            else ""
        )

    def __str__(self) -> str:
        via = f" through the proxy {self.proxy.host}:{self.proxy.port}" if self.proxy else ""
        return f"{_authority(self.host, self.port)}{via}"

    async def __call__(self, factory: Callable[[], Connection]) -> Connection:
        try:
            return await self._open(factory)
        except UpstreamConnectionError:
            raise
        except ssl.SSLCertVerificationError as exc:
            raise UpstreamConnectionError(
                f"The upstream's TLS certificate was refused ({self}): {exc.verify_message}."
            ) from exc
        except TimeoutError as exc:
            raise UpstreamTimeout(f"Connecting to {self} timed out.") from exc
        except OSError as exc:  # (ssl.SSLError, socket.gaierror, refused, unreachable)
            raise UpstreamConnectionError(f"Could not connect to {self}: {exc}") from exc

    async def _open(self, factory: Callable[[], Connection]) -> Connection:
        proxy = self.proxy
        if proxy is None:
            return await self._connect(factory, self.host, self.port, self.tls)
        if self.tls is None:
            return await self._connect(factory, proxy.host, proxy.port, None)
        return await self._tunnel(factory, proxy, self.tls)

    async def _connect(
        self, factory: Callable[[], P], host: str, port: int, tls: ssl.SSLContext | None
    ) -> P:
        """A connection to the first of ``host``'s addresses that takes one (the protocol
        ``factory`` made)."""
        loop = asyncio.get_running_loop()
        failure: OSError | None = None
        for family, address in await self.addresses.of(host, port):
            try:
                _, protocol = await loop.create_connection(
                    factory,
                    address,
                    port,
                    family=family,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
                return protocol
            except ssl.SSLError:
                raise  # (the endpoint answered: its certificate stands for every address)
            except OSError as exc:
                failure = exc
        raise failure or OSError(f"no address for {host}")

    async def _tunnel(
        self, factory: Callable[[], Connection], proxy: Proxy, tls: ssl.SSLContext
    ) -> Connection:
        loop = asyncio.get_running_loop()
        reply: _TunnelReply = await self._connect(
            lambda: _TunnelReply(loop), proxy.host, proxy.port, None
        )
        transport = reply.transport
        try:
            authority = _authority(self.host, self.port)
            auth = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
            transport.write(
                f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}\r\n".encode()
            )
            head = await reply.head
            status = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = status.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise UpstreamProtocolError(f"The proxy answered CONNECT with {status!r}.")
            if not parts[1].startswith("2"):
                raise UpstreamConnectionError(
                    f"The proxy {proxy.host}:{proxy.port} refused to connect to {authority}: "
                    f"{status}"
                )
            if reply.early:
                raise UpstreamProtocolError("The proxy sent bytes before the TLS handshake.")
            conn = factory()
            tls_transport = await loop.start_tls(transport, conn, tls, server_hostname=self.host)
        except BaseException:
            transport.abort()
            raise
        if tls_transport is None:
            raise UpstreamConnectionError("The TLS connection through the proxy closed.")
        conn.connection_made(tls_transport)
        return conn


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _TunnelReply(asyncio.Protocol):
    """A proxy's answer to ``CONNECT``, up to the end of its head."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.head: asyncio.Future[bytes] = loop.create_future()
        self._data = b""
        self.early = False
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.head.done():
            return
        self._data += data
        end = self._data.find(b"\r\n\r\n")
        if end >= 0:
            self.early = end + 4 < len(self._data)  # (bytes before the TLS handshake)
            self.head.set_result(self._data[: end + 4])
        elif len(self._data) > _TUNNEL_REPLY_LIMIT:
            self.head.set_exception(UpstreamProtocolError("The proxy's answer is too long."))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            failure = UpstreamConnectionError("The proxy closed the connection.")
            failure.__cause__ = exc
            self.head.set_exception(failure)
