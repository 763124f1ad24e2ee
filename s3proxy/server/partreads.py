"""GetObject and HeadObject with ``?partNumber=N``: one part of an object as S3 serves it."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from s3proxy.core.marker import Marker
from s3proxy.core.request import Target
from s3proxy.server.readcontext import ReadContext
from s3proxy.server.readrules import ReadHeaders, read_answer
from s3proxy.server.relay import relay


class PartReader:
    def __init__(self, context: ReadContext) -> None:
        self.context = context

    # ---- GetObject / HeadObject ?partNumber=N ------------------------------------------------

    async def read_part(self, request: web.Request, target: Target) -> web.StreamResponse:
        """One part of an object, as S3 serves it (core/readplan.py): 206, the part's plaintext
        bytes, their place in the whole object in ``Content-Range``, and
        ``x-amz-mp-parts-count``."""
        read_headers = ReadHeaders.of(request, part_number=target.param("partNumber"))
        whole = target.without("partNumber")
        keys: dict[str, bytes] = {}
        found = await self.context.objects.probe(whole, read_headers.forwarded, keys)
        if isinstance(found, aiohttp.ClientResponse):
            async with found:
                if found.status not in (200, 206, 416):
                    return await relay(request, found)
            return await self.context.relay_unencrypted(
                request, request.method, target, read_headers.as_sent()
            )
        info, probe = found
        answer = read_answer(read_headers.query, info, Marker.of(probe.headers), probe)
        return await self.context.sender.send_span(
            request, whole, read_headers.forwarded, probe, answer, keys
        )
