"""How the proxy is served: aiohttp's low-level server (``web.Server``) with the proxy's own
dispatch, instead of an ``Application`` with its router, middleware chain and signals
(docs/performance.md, *The budget of a 4 KiB request*). Every request goes to
:meth:`Proxy.handle <s3proxy.server.app.Proxy.handle>`; what the application added is done
here: ``Expect: 100-continue``, counting requests in flight for the lifecycle, and the hooks run
as a response starts (CORS headers, ``Connection: close`` while draining).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import HttpVersion11, RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from s3proxy.server.app import Proxy, response_starting
from s3proxy.server.completion import COMPLETE_BODY_LIMIT
from s3proxy.server.lifecycle import Lifecycle


class ProxyRequest(web.Request):
    """A request whose responses run :meth:`ProxyServer.starting` as they start (in place of
    an application's ``on_response_prepare`` signal)."""

    ATTRS = web.Request.ATTRS | frozenset(["_server"])
    _server: ProxyServer

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        self._server.starting(self, response)


class ProxyServer:
    """The proxy's dispatch for ``web.Server``: one handler, one request factory."""

    def __init__(self, proxy: Proxy, lifecycle: Lifecycle | None = None) -> None:
        self.proxy = proxy
        self.lifecycle = lifecycle

    def runner(self, shutdown_timeout: float = 60.0, **settings: Any) -> web.ServerRunner:
        """A runner for sites (``web.TCPSite``); ``settings`` go to aiohttp's request handler
        (limits, ``access_log``, ``handler_cancellation``...). Call with a running loop."""
        server = web.Server(self.handle, request_factory=self._request, **settings)
        return web.ServerRunner(server, shutdown_timeout=shutdown_timeout)

    def _request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> ProxyRequest:
        request = ProxyRequest(
            message,
            payload,
            protocol,
            writer,
            task,
            asyncio.get_running_loop(),
            client_max_size=COMPLETE_BODY_LIMIT,
        )
        request._server = self
        return request

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        assert isinstance(request, ProxyRequest)
        if request.headers.get("Expect") is not None:
            await _expect(request)
        lifecycle = self.lifecycle
        if lifecycle is None:
            return await self.proxy.handle(request)
        lifecycle.entered()
        try:
            return await self.proxy.handle(request)
        finally:
            lifecycle.left()

    def starting(self, request: web.Request, response: web.StreamResponse) -> None:
        response_starting(request, response)
        if self.lifecycle is not None and self.lifecycle.draining:
            response.force_close()


async def _expect(request: web.Request) -> None:
    """``Expect``, as aiohttp's application answers it: ``100 Continue`` before the handler
    reads the body; any other expectation of an HTTP/1.1 request is refused (417)."""
    if request.version != HttpVersion11:
        return
    expect = request.headers.get("Expect", "")
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0
    await request.writer.drain()
