"""GetObject of an object the proxy wrote, whole or ranged, conditional or not: the plaintext
with its ETag and checksum. HeadObject is in server/heads.py, ``?partNumber`` reads in
server/partreads.py. See docs/design.md, Reading."""

from __future__ import annotations

import logging

from aiohttp import web

from s3proxy.core.conditions import evaluate
from s3proxy.core.errors import IntegrityError, RangeError
from s3proxy.core.format import Header, parse_header
from s3proxy.core.headers import content_length
from s3proxy.core.marker import Marker
from s3proxy.core.objectinfo import ObjectInfo, check_marker
from s3proxy.core.readplan import plan_span
from s3proxy.core.request import Target
from s3proxy.core.sizes import HEADER_SIZE
from s3proxy.server.readcontext import ReadContext
from s3proxy.server.readrules import (
    WHOLE_READ_LIMIT,
    ReadHeaders,
    last_modified,
    read_answer,
    read_exactly,
    unencrypted_allowed,
    upstream_chunks,
)
from s3proxy.server.relay import relay
from s3proxy.store.cachedlayouts import info_from_shared
from s3proxy.store.spans import known_span
from s3proxy.upstream.response import Response

log = logging.getLogger("s3proxy")


class Reader:
    def __init__(self, context: ReadContext) -> None:
        self.context = context

    # ---- GetObject ---------------------------------------------------------------------------

    async def get_object(self, request: web.Request, target: Target) -> web.StreamResponse:
        read_headers = ReadHeaders.of(request)
        query = read_headers.query
        if query.range is not None or query.conditions:
            return await self._get_probed(request, target, read_headers)
        # Without a Range, If-Range means nothing; it never goes upstream (the upstream would
        # compare it with its own ETag and answer a whole stored object).
        upstream_resp = await self.context.upstream.send("GET", target, read_headers.forwarded)
        async with upstream_resp:
            marker = Marker.of(upstream_resp.headers) if upstream_resp.status == 200 else None
            if marker is None:
                if upstream_resp.status == 200:
                    unencrypted_allowed(self.context.config, target, upstream_resp)
                return await relay(request, upstream_resp)
            return await self._get_whole(request, target, read_headers, upstream_resp, marker)

    async def _get_whole(
        self,
        request: web.Request,
        target: Target,
        read_headers: ReadHeaders,
        upstream_resp: Response,
        marker: Marker,
    ) -> web.StreamResponse:
        """A plain GET of an object the proxy wrote: its first stored bytes tell the layout
        (cached, or built from them), then the rest of the response is decrypted."""
        stored_total = content_length(upstream_resp.headers)
        if stored_total is None:
            raise IntegrityError("The upstream did not report the stored object's size.")
        if stored_total < HEADER_SIZE:
            raise IntegrityError("The stored object is shorter than its header.")
        head = await read_exactly(upstream_resp, HEADER_SIZE)
        stored_etag = upstream_resp.headers.get("ETag")
        keys: dict[str, bytes] = {}
        first = parse_header(head)
        check_marker(first, marker)
        info = self.context.objects.cached(target, stored_etag, stored_total, first)
        if info is None and marker.multipart:
            # Its layout takes many ranged reads: the whole-object response does not wait for
            # them (an upstream may give up on a reader that stalls, as LocalStack does after
            # about a second); its plaintext is fetched again, If-Match.
            upstream_resp.close()
            info = await self._build(target, upstream_resp, stored_total, first, head, marker, keys)
            answer = read_answer(read_headers.query, info, marker, upstream_resp)
            return await self.context.sender.send_span(
                request, target, read_headers.forwarded, upstream_resp, answer, keys
            )
        if info is None:
            if not marker.multipart and stored_total <= WHOLE_READ_LIMIT:
                # A small object arrives whole anyway: its trailer is in this response.
                head += await read_exactly(upstream_resp, stored_total - HEADER_SIZE)
            else:  # a larger one: the shared cache's entry stands for its footer, if it has one
                modified = last_modified(upstream_resp)
                objects = self.context.objects
                info = await info_from_shared(
                    objects, target, stored_etag, stored_total, first, marker, modified
                )
        if info is None:
            info = await self._build(target, upstream_resp, stored_total, first, head, marker, keys)
        answer = read_answer(read_headers.query, info, marker, upstream_resp)
        return await self.context.sender.send_plan(
            request,
            upstream_chunks(upstream_resp),
            answer,
            upstream_resp.headers,
            prefix=head,
            keys=keys,
        )

    async def _build(
        self,
        target: Target,
        upstream_resp: Response,
        stored_total: int,
        first: Header,
        head: bytes,
        marker: Marker,
        keys: dict[str, bytes],
    ) -> ObjectInfo:
        """The info of the object whose first stored bytes (``head``) the response brought."""
        return await self.context.objects.build(
            target,
            upstream_resp.headers.get("ETag"),
            stored_total,
            first,
            marker,
            keys,
            known=head,
            modified=last_modified(upstream_resp),
        )

    async def _get_probed(
        self, request: web.Request, target: Target, read_headers: ReadHeaders
    ) -> web.StreamResponse:
        """Ranged or conditional GET: the first 256 bytes tell whether the object is ours, its
        size and stored ETag; the proxy evaluates the conditions on the plaintext ETag, then a
        second request with ``If-Match`` fetches exactly the segments of the range."""
        keys: dict[str, bytes] = {}
        known = await self._get_known(request, target, read_headers, keys)
        if known is not None:
            return known
        return await self.context.read_probed(request, target, read_headers, keys, target)

    async def _get_known(
        self,
        request: web.Request,
        target: Target,
        read_headers: ReadHeaders,
        keys: dict[str, bytes],
    ) -> web.StreamResponse | None:
        """Ranged or conditional GET of an object whose layout this process holds under the
        stored ETag it last saw: one request for the span, ``If-Match`` that stored ETag. The
        client's conditions are evaluated on the cached plaintext ETag and the answer's
        Last-Modified before anything is sent. ``None``: not known, or the object changed (or
        the request needs the probe): the caller probes (docs/design.md, Reading without a
        probe)."""
        query = read_headers.query
        if any(k.lower() in ("if-none-match", "if-modified-since") for k, _ in query.conditions):
            return None  # revalidations mostly end in 304: the probe costs less than a span
        if query.if_range is not None and not query.if_range.strip().startswith(("W/", '"')):
            return None  # a date needs the object's Last-Modified before the range is chosen
        seen = self.context.objects.last_seen(target)
        if seen is None:
            return None
        stored_etag, info = seen
        if query.conditions and evaluate(dict(query.conditions), info.etag or "", None) == 412:
            return None  # an If-Match the cached object fails: the probe's 256 bytes decide
        try:  # what to fetch; the conditions wait for the answer's Last-Modified
            planned = plan_span(query, info, None, info.etag or stored_etag, None)
        except RangeError:
            return None  # perhaps a size that changed: the probe tells
        assert planned.plan is not None
        objects = self.context.objects
        span = await known_span(
            objects.upstream, target, read_headers.forwarded, stored_etag, info, planned.plan
        )
        if span is None:
            objects.forget_last(target)
            return None
        async with span.resp:
            answer = read_answer(query, info, Marker.of(span.resp.headers), span.resp)
            return await self.context.sender.send_plan(
                request, span.chunks(), answer, span.resp.headers, keys=keys
            )
