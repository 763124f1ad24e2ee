"""HeadObject of an object the proxy wrote: the plaintext's size, ETag and checksum, from its
layout (docs/design.md, Reading)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from s3proxy.core.errors import IntegrityError, PreconditionChanged
from s3proxy.core.headers import content_length
from s3proxy.core.marker import Marker
from s3proxy.core.objectinfo import ObjectInfo, check_marker
from s3proxy.core.request import Target
from s3proxy.core.sizes import HEADER_SIZE
from s3proxy.server.readcontext import ReadContext
from s3proxy.server.readrules import (
    WHOLE_READ_LIMIT,
    ReadHeaders,
    read_answer,
    unencrypted_allowed,
)
from s3proxy.server.relay import relay
from s3proxy.server.sending import send_without_body


class HeadReader:
    def __init__(self, context: ReadContext) -> None:
        self.context = context

    # ---- HeadObject --------------------------------------------------------------------------

    async def head_object(self, request: web.Request, target: Target) -> web.StreamResponse:
        read_headers = ReadHeaders.of(request)
        query = read_headers.query
        upstream_resp = await self.context.upstream.send("HEAD", target, read_headers.forwarded)
        async with upstream_resp:
            marker = Marker.of(upstream_resp.headers) if upstream_resp.status == 200 else None
            if marker is not None:
                info = await self._info(target, upstream_resp, marker)
                answer = read_answer(query, info, marker, upstream_resp)
                return await send_without_body(request, answer, upstream_resp.headers)
            if upstream_resp.status != 200:
                return await relay(request, upstream_resp)
            unencrypted_allowed(self.context.config, target, upstream_resp)
            if query.range is None and not query.conditions:
                return await relay(request, upstream_resp)
        return await self.context.relay_unencrypted(request, "HEAD", target, read_headers.as_sent())

    async def _info(
        self, target: Target, upstream_resp: aiohttp.ClientResponse, marker: Marker
    ) -> ObjectInfo:
        """The object the HEAD saw: from the cache, or its header read (and its trailer, in
        v2). The marker alone must never decide the size a client is told (docs/design.md,
        Reading)."""
        stored_total = content_length(upstream_resp.headers)
        if stored_total is None:
            raise IntegrityError("The upstream did not report the stored object's size.")
        stored_etag = upstream_resp.headers.get("ETag")
        info = self.context.objects.cached(target, stored_etag, stored_total, None)
        if info is not None:
            check_marker(info.layout.streams[0].header, marker)
        else:
            same = [("If-Match", stored_etag)] if stored_etag else []
            # A small single stream is read whole: its trailer comes with its header.
            small = not marker.multipart and stored_total <= WHOLE_READ_LIMIT
            length = stored_total if small else HEADER_SIZE
            async with self.context.objects.probing(target, same, length=length) as probe:
                if probe.info is None:
                    raise PreconditionChanged("The object changed while s3proxy read it; retry.")
                info = probe.info
        if info.layout.stored_length != stored_total:
            raise IntegrityError("The stored object's streams do not add up to its size.")
        return info
