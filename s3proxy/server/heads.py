"""HeadObject of an object the proxy wrote: the plaintext's size, ETag and checksum, from its
layout (docs/design.md, Reading)."""

from __future__ import annotations

from aiohttp import web

from s3proxy.core.errors import IntegrityError
from s3proxy.core.headers import content_length
from s3proxy.core.marker import Marker
from s3proxy.core.readplan import needs_layout
from s3proxy.core.request import Target
from s3proxy.server.readcontext import ReadContext
from s3proxy.server.readrules import (
    ReadHeaders,
    read_answer,
    unencrypted_allowed,
)
from s3proxy.server.relay import relay
from s3proxy.server.sending import send_without_body
from s3proxy.store.ends import EndReader


class HeadReader:
    def __init__(self, context: ReadContext) -> None:
        self.context = context
        self.ends = EndReader(context.objects)

    # ---- HeadObject --------------------------------------------------------------------------

    async def head_object(self, request: web.Request, target: Target) -> web.StreamResponse:
        """The object's end first (``Range: bytes=-160``): a GET's answer carries what a HEAD's
        would, its ``Content-Range`` the stored size, and a v3 object's footer everything else
        (one request); a 404 is the HEAD's answer. Anything else (an empty object's 416, an
        archived object's 403, an object not written by the proxy, a store that ignores
        ``Range``) is asked again as a HEAD (docs/metadata.md)."""
        read_headers = ReadHeaders.of(request)
        async with self.ends.end_bytes(target, read_headers.forwarded) as found:
            if found.marker is not None:
                info = await self.ends.described_at_end(
                    target,
                    found.resp,
                    found.marker,
                    found.stored_total,
                    found.end,
                    not needs_layout(read_headers.query),
                )
                answer = read_answer(read_headers.query, info, found.marker, found.resp)
                return await send_without_body(request, answer, found.resp.headers)
            if found.resp.status == 404:  # no object (S3 marks a delete marker's answer too)
                return await relay(request, found.resp)  # (as a HEAD's: no body)
        return await self._head(request, target, read_headers)

    async def _head(
        self, request: web.Request, target: Target, read_headers: ReadHeaders
    ) -> web.StreamResponse:
        """HeadObject as the store answers it: no object, one not written by the proxy, or
        (a store that ignores ``Range``) one read from its start as before the footer."""
        query = read_headers.query
        upstream_resp = await self.context.upstream.send("HEAD", target, read_headers.forwarded)
        async with upstream_resp:
            marker = Marker.of(upstream_resp.headers) if upstream_resp.status == 200 else None
            if marker is not None:
                stored_total = content_length(upstream_resp.headers)
                if stored_total is None:
                    raise IntegrityError("The upstream did not report the stored object's size.")
                info = await self.ends.described_at_end(
                    target,
                    upstream_resp,
                    marker,
                    stored_total,
                    summary_ok=not needs_layout(query),
                )
                answer = read_answer(query, info, marker, upstream_resp)
                return await send_without_body(request, answer, upstream_resp.headers)
            if upstream_resp.status != 200:
                return await relay(request, upstream_resp)
            unencrypted_allowed(self.context.config, target, upstream_resp)
            if query.range is None and not query.conditions:
                return await relay(request, upstream_resp)
        return await self.context.relay_unencrypted(request, "HEAD", target, read_headers.as_sent())
