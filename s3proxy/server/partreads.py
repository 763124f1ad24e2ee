"""GetObject and HeadObject with ``?partNumber=N``: one part of an object as S3 serves it."""

from __future__ import annotations

from aiohttp import web

from s3proxy.core.request import Target
from s3proxy.server.readcontext import ReadContext
from s3proxy.server.readrules import ReadHeaders


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
        return await self.context.read_probed(request, whole, read_headers, keys, target)
