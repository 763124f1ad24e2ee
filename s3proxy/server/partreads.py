"""GetObject and HeadObject with ``?partNumber=N``: one part of an object as S3 serves it."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from s3proxy.core.errors import (
    InvalidArgument,
    InvalidPartNumber,
    InvalidRequest,
    NotImplementedByProxy,
)
from s3proxy.core.headers import upstream_request_headers
from s3proxy.core.marker import Marker
from s3proxy.core.numbers import parse_decimal
from s3proxy.core.request import Target
from s3proxy.server.readcontext import ReadContext
from s3proxy.server.readrules import (
    check_conditions,
    checksum_mode,
    hidden_tags,
    plaintext_headers,
    pop_conditions,
)
from s3proxy.server.relay import add_headers, relay


class PartReader:
    def __init__(self, context: ReadContext) -> None:
        self.context = context

    # ---- GetObject / HeadObject ?partNumber=N ------------------------------------------------

    async def read_part(self, request: web.Request, target: Target) -> web.StreamResponse:
        """One part of an object, as S3 serves it: 206, the part's plaintext bytes, their place
        in the whole object in ``Content-Range``, and ``x-amz-mp-parts-count``."""
        number = parse_decimal(target.param("partNumber"), low=1, high=10000)
        if number is None:
            raise InvalidArgument("Part number must be an integer between 1 and 10000, inclusive")
        if request.headers.get("Range") is not None:
            raise InvalidRequest("Cannot specify both Range header and partNumber query parameter")
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        conditions = pop_conditions(headers)
        whole = target.without("partNumber")
        keys: dict[str, bytes] = {}
        found = await self.context.objects.probe(whole, headers, keys)
        if isinstance(found, aiohttp.ClientResponse):
            async with found:
                if found.status not in (200, 206, 416):
                    return await relay(request, found)
            return await self.context.relay_unencrypted(
                request, request.method, target, [*headers, *conditions]
            )
        info, probe = found
        layout = info.layout
        marker = Marker.of(probe.headers)
        parts = len(layout.streams)
        stored_etag = probe.headers.get("ETag", "")
        suffix = stored_etag.strip('"').rpartition("-")[2]
        if marker is not None and marker.multipart and parse_decimal(suffix) not in (None, parts):
            raise NotImplementedByProxy(
                "s3proxy does not support this request: partNumber reads of an object whose "
                "parts were copied from other multipart objects"
            )
        etag = info.etag or stored_etag
        check_conditions(request, conditions, etag, probe)
        if number > parts:
            raise InvalidPartNumber("The requested partnumber is not satisfiable")
        stream = layout.streams[number - 1]
        first = stream.plaintext_offset
        last = first + stream.plaintext_length - 1
        total = layout.plaintext_length
        extra = [("x-amz-mp-parts-count", str(parts))] if marker and marker.multipart else []
        part_checksum = info.part_checksum(number - 1)
        if checksum_mode(request) and part_checksum is not None:
            extra.append((f"x-amz-checksum-{part_checksum[0]}", part_checksum[1]))
        if request.method == "HEAD" or stream.plaintext_length == 0:
            resp = web.StreamResponse(status=206)
            add_headers(resp, plaintext_headers(probe.headers.items(), etag, hidden_tags(info)))
            add_headers(resp, extra)
            if stream.plaintext_length:
                resp.headers["Content-Range"] = f"bytes {first}-{last}/{total}"
            resp.content_length = stream.plaintext_length
            await resp.prepare(request)
            await resp.write_eof()
            return resp
        return await self.context.sender.send_span(
            request,
            whole,
            headers,
            probe,
            layout.plan_range(first, last),
            status=206,
            content_range=f"bytes {first}-{last}/{total}",
            etag=etag,
            extra=extra,
            keys=keys,
            hidden_tags=hidden_tags(info),
        )
