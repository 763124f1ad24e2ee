"""HeadObject of an object the proxy wrote: the plaintext's size, ETag and checksum, from its
layout (docs/design.md, Reading)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from s3proxy.core.conditions import range_applies
from s3proxy.core.errors import IntegrityError, PreconditionChanged
from s3proxy.core.headers import HeaderPairs, content_length
from s3proxy.core.marker import Marker
from s3proxy.core.objectinfo import check_marker
from s3proxy.core.request import Target
from s3proxy.core.sizes import HEADER_SIZE
from s3proxy.server.readcontext import ReadContext
from s3proxy.server.readrules import (
    WHOLE_READ_LIMIT,
    ReadHeaders,
    check_conditions,
    checksum_headers,
    checksum_mode,
    client_range,
    hidden_tags,
    if_range_header,
    last_modified,
    plaintext_headers,
    unencrypted_allowed,
)
from s3proxy.server.relay import add_headers, relay


class HeadReader:
    def __init__(self, context: ReadContext) -> None:
        self.context = context

    # ---- HeadObject --------------------------------------------------------------------------

    async def head_object(self, request: web.Request, target: Target) -> web.StreamResponse:
        read_headers = ReadHeaders.of(request)
        headers = read_headers.forwarded
        range_value, conditions = read_headers.range_value, read_headers.conditions
        upstream_resp = await self.context.upstream.send("HEAD", target, headers)
        async with upstream_resp:
            marker = Marker.of(upstream_resp.headers) if upstream_resp.status == 200 else None
            if marker is None:
                if upstream_resp.status != 200:
                    return await relay(request, upstream_resp)
                unencrypted_allowed(self.context.config, target, upstream_resp)
                if range_value is None and not conditions:
                    return await relay(request, upstream_resp)
            else:
                return await self._head_encrypted(
                    request, target, upstream_resp, marker, range_value, conditions
                )
        again = [*headers, *conditions, *([("Range", range_value)] if range_value else [])]
        return await self.context.relay_unencrypted(
            request, "HEAD", target, [*again, *if_range_header(request)]
        )

    async def _head_encrypted(
        self,
        request: web.Request,
        target: Target,
        upstream_resp: aiohttp.ClientResponse,
        marker: Marker,
        range_value: str | None,
        conditions: HeaderPairs,
    ) -> web.StreamResponse:
        stored_total = content_length(upstream_resp.headers)
        if stored_total is None:
            raise IntegrityError("The upstream did not report the stored object's size.")
        stored_etag = upstream_resp.headers.get("ETag")
        # The header too (and the trailer in v2), or their authenticated copy cached under this
        # stored ETag and size: the marker alone must never decide the size a client is told
        # (docs/design.md, Reading).
        info = self.context.objects.cached(target, stored_etag, stored_total, None)
        if info is not None:
            check_marker(info.layout.streams[0].header, marker)
        else:
            same = [("If-Match", stored_etag)] if stored_etag else []
            # A small single stream is read whole: its trailer comes with its header.
            small = not marker.multipart and stored_total <= WHOLE_READ_LIMIT
            found = await self.context.objects.probe(
                target, same, length=stored_total if small else HEADER_SIZE
            )
            if isinstance(found, aiohttp.ClientResponse):
                found.release()
                raise PreconditionChanged("The object changed while s3proxy read it; retry.")
            info = found[0]
        if info.layout.stored_length != stored_total:
            raise IntegrityError("The stored object's streams do not add up to its size.")
        total, etag = info.size, info.etag or stored_etag
        checksums = checksum_headers(info, marker)
        check_conditions(request, conditions, etag, upstream_resp)
        status, length, content_range = 200, total, None
        if not range_applies(
            request.headers.get("If-Range"), etag or "", last_modified(upstream_resp)
        ):
            range_value = None
        if range_value is not None:
            first_last = client_range(range_value, total)
            if first_last is not None:
                first, last = first_last
                status, length = 206, last - first + 1
                content_range = f"bytes {first}-{last}/{total}"
        resp = web.StreamResponse(status=status)
        add_headers(resp, plaintext_headers(upstream_resp.headers.items(), etag, hidden_tags(info)))
        if content_range:
            resp.headers["Content-Range"] = content_range
        elif checksum_mode(request):
            add_headers(resp, checksums)
        resp.content_length = length
        await resp.prepare(request)
        await resp.write_eof()
        return resp
