"""GetObject of an object the proxy wrote, whole or ranged, conditional or not: the plaintext
with its ETag and checksum. HeadObject is in server/heads.py, ``?partNumber`` reads in
server/partreads.py. See docs/design.md, Reading."""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from s3proxy.core.conditions import range_applies
from s3proxy.core.errors import IntegrityError, RangeError
from s3proxy.core.format import parse_header
from s3proxy.core.headers import HeaderPairs, content_length
from s3proxy.core.layout import ReadPlan
from s3proxy.core.marker import Marker
from s3proxy.core.objectinfo import ObjectInfo, check_marker
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
    read_exactly,
    unencrypted_allowed,
    upstream_chunks,
)
from s3proxy.server.relay import relay

log = logging.getLogger("s3proxy")


class Reader:
    def __init__(self, context: ReadContext) -> None:
        self.context = context

    # ---- GetObject ---------------------------------------------------------------------------

    async def get_object(self, request: web.Request, target: Target) -> web.StreamResponse:
        read_headers = ReadHeaders.of(request)
        if read_headers.range_value is not None or read_headers.conditions:
            return await self._get_probed(request, target, read_headers)
        headers = read_headers.forwarded
        # Without a Range, If-Range means nothing; it never goes upstream (the upstream would
        # compare it with its own ETag and answer a whole stored object).
        upstream_resp = await self.context.upstream.send("GET", target, headers)
        async with upstream_resp:
            marker = Marker.of(upstream_resp.headers) if upstream_resp.status == 200 else None
            if marker is None:
                if upstream_resp.status == 200:
                    unencrypted_allowed(self.context.config, target, upstream_resp)
                return await relay(request, upstream_resp)
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
                # Its layout takes many ranged reads: the whole-object response does not wait
                # for them (an upstream may give up on a reader that stalls, as LocalStack
                # does after about a second); its plaintext is fetched again, If-Match.
                upstream_resp.close()
                info = await self.context.objects.build(
                    target,
                    stored_etag,
                    stored_total,
                    first,
                    marker,
                    keys,
                    known=head,
                    modified=last_modified(upstream_resp),
                )
                return await self.context.sender.send_span(
                    request,
                    target,
                    headers,
                    upstream_resp,
                    info.layout.plan_all(),
                    status=200,
                    content_range=None,
                    etag=info.etag or stored_etag,
                    extra=checksum_headers(info, marker) if checksum_mode(request) else [],
                    keys=keys,
                    hidden_tags=hidden_tags(info),
                )
            if info is None:
                if not marker.multipart and stored_total <= WHOLE_READ_LIMIT:
                    # A small object arrives whole anyway: its trailer is in this response.
                    head += await read_exactly(upstream_resp, stored_total - HEADER_SIZE)
                info = await self.context.objects.build(
                    target,
                    stored_etag,
                    stored_total,
                    first,
                    marker,
                    keys,
                    known=head,
                    modified=last_modified(upstream_resp),
                )
            checksums = checksum_headers(info, marker) if checksum_mode(request) else []
            return await self.context.sender.send_plan(
                request,
                upstream_chunks(upstream_resp),
                info.layout.plan_all(),
                status=200,
                content_range=None,
                source_headers=upstream_resp.headers.items(),
                etag=info.etag or stored_etag,
                extra=checksums,
                prefix=head,
                keys=keys,
                hidden_tags=hidden_tags(info),
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
        headers, range_value = read_headers.forwarded, read_headers.range_value
        found = await self.context.objects.probe(target, headers, keys)
        if isinstance(found, aiohttp.ClientResponse):
            async with found:
                if found.status not in (200, 206, 416):
                    return await relay(request, found)
            # Not ours (or empty): the upstream answers the client's own range and conditions.
            conditions = [*read_headers.conditions, *if_range_header(request)]
            again = [*headers, *conditions, *([("Range", range_value)] if range_value else [])]
            return await self.context.relay_unencrypted(request, "GET", target, again)
        info, probe = found
        marker = Marker.of(probe.headers)
        etag = info.etag or probe.headers.get("ETag")
        check_conditions(request, read_headers.conditions, etag, probe)
        if_range = request.headers.get("If-Range")
        if not range_applies(if_range, etag or "", last_modified(probe)):
            range_value = None  # a stale If-Range: the whole object, 200, decrypted as ever
        first_last = None if range_value is None else client_range(range_value, info.size)
        plan, status, content_range = _read_plan(info, first_last)
        extra: HeaderPairs = []
        if first_last is None and checksum_mode(request) and marker is not None:
            extra = checksum_headers(info, marker)
        return await self.context.sender.send_span(
            request,
            target,
            headers,
            probe,
            plan,
            status=status,
            content_range=content_range,
            etag=etag,
            extra=extra,
            keys=keys,
            hidden_tags=hidden_tags(info),
        )

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
        conditions = read_headers.conditions
        if any(k.lower() in ("if-none-match", "if-modified-since") for k, _ in conditions):
            return None  # revalidations mostly end in 304: the probe costs less than a span
        if_range = request.headers.get("If-Range")
        if if_range is not None and not if_range.strip().startswith(("W/", '"')):
            return None  # a date needs the object's Last-Modified before the range is chosen
        seen = self.context.objects.last_seen(target)
        if seen is None:
            return None
        stored_etag, info = seen
        etag = info.etag or stored_etag
        range_value = read_headers.range_value
        if not range_applies(if_range, etag, None):
            range_value = None
        try:
            first_last = None if range_value is None else client_range(range_value, info.size)
        except RangeError:
            return None  # perhaps a size that changed: the probe tells
        plan, status, content_range = _read_plan(info, first_last)
        span = await self.context.objects.known_span(
            target, read_headers.forwarded, stored_etag, info, plan
        )
        if span is None:
            return None
        async with span.resp:
            marker = Marker.of(span.resp.headers)
            check_conditions(request, conditions, etag, span.resp)
            extra: HeaderPairs = []
            if first_last is None and checksum_mode(request) and marker is not None:
                extra = checksum_headers(info, marker)
            return await self.context.sender.send_plan(
                request,
                span.chunks(),
                plan,
                status=status,
                content_range=content_range,
                source_headers=span.resp.headers.items(),
                etag=etag,
                extra=extra,
                keys=keys,
                hidden_tags=hidden_tags(info),
            )


def _read_plan(
    info: ObjectInfo, first_last: tuple[int, int] | None
) -> tuple[ReadPlan, int, str | None]:
    """The stored segments to read, the status and the Content-Range: the whole object, or the
    plaintext bytes ``first..last`` of it."""
    if first_last is None:
        return info.layout.plan_all(), 200, None
    first, last = first_last
    return info.layout.plan_range(first, last), 206, f"bytes {first}-{last}/{info.size}"
