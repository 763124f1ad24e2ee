"""GetObject and HeadObject with ``?partNumber=N``: one part of an object as S3 serves it."""

from __future__ import annotations

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
        headers = read_headers.forwarded
        async with self.context.objects.probing(whole, headers, keys) as probe:
            if probe.info is not None:
                marker = Marker.of(probe.resp.headers)
                answer = read_answer(read_headers.query, probe.info, marker, probe.resp)
                sender = self.context.sender
                return await sender.send_span(request, whole, headers, probe.resp, answer, keys)
            if probe.resp.status not in (200, 206, 416):
                return await relay(request, probe.resp)
        return await self.context.relay_unencrypted(
            request, request.method, target, read_headers.as_sent()
        )
