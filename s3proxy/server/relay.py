"""Small pieces of the HTTP shell shared by the handlers: relaying an upstream response,
cutting a connection short, and the encryption marker of upstream responses."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from s3proxy.core.headers import (
    HeaderPairs,
    client_response_headers,
    content_length,
)
from s3proxy.core.sizes import READ_CHUNK
from s3proxy.telemetry.accesslog import count_upstream
from s3proxy.upstream.httperrors import UpstreamError
from s3proxy.upstream.response import Response

log = logging.getLogger("s3proxy")


class BodyResponse(web.StreamResponse):
    """A streamed response whose headers go out with its first body bytes, in one send, as
    aiohttp does for a whole ``web.Response``: on loopback a send costs as much as the
    proxy's own work on a small body (docs/performance-history.md, Changes and what they
    bought)."""

    _send_headers_immediately = False


class Aborted(Exception):
    """The response had started when an error came; the connection was cut."""


def add_headers(resp: web.StreamResponse, headers: HeaderPairs) -> None:
    for name, value in headers:
        resp.headers.add(name, value)


def abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


async def relay(request: web.Request, upstream_resp: Response) -> web.StreamResponse:
    """Stream an upstream response to the client unchanged (hop-by-hop headers aside)."""
    resp = BodyResponse(status=upstream_resp.status, reason=upstream_resp.reason)
    add_headers(resp, client_response_headers(upstream_resp.headers.items(), decrypted=False))
    length = content_length(upstream_resp.headers)
    if length is not None:
        resp.content_length = length
    await resp.prepare(request)
    if request.method != "HEAD" and upstream_resp.status not in (204, 304):
        try:
            async for chunk in upstream_resp.content.iter_chunked(READ_CHUNK):
                await resp.write(count_upstream(chunk))
        except UpstreamError as exc:
            log.error("upstream response broke off: %s", type(exc).__name__)
            abort(request)
            raise Aborted() from exc
    await resp.write_eof()
    return resp


def relay_body(
    upstream_resp: Response,
    body: bytes,
    extra: HeaderPairs | None = None,
    *,
    status: int | None = None,
) -> web.Response:
    """A small upstream response with a replaced body (and its stored-object checksums and
    the proxy's metadata removed), plus ``extra`` headers, which replace any of their names."""
    replaced = {name.lower() for name, _ in extra or []}
    headers = [
        (name, value)
        for name, value in client_response_headers(upstream_resp.headers.items(), decrypted=True)
        if name.lower() not in replaced
    ]
    if status is None:
        resp = web.Response(status=upstream_resp.status, reason=upstream_resp.reason, body=body)
    else:
        resp = web.Response(status=status, body=body or None)
    add_headers(resp, [*headers, *(extra or [])])
    return resp


async def no_bytes() -> AsyncIterator[bytes]:
    """An empty body stream."""
    return
    yield b""
