"""Small ranged reads of a stored object: stored bytes by offset, and the walk from stream header
to stream header that finds a multipart object's layout (core/layout.discover), its guesses
fetched in parallel, each with the sealed trailer or footer just before it. See docs/design.md,
Multipart objects."""

from __future__ import annotations

import asyncio

from s3proxy.core.errors import IntegrityError, PreconditionChanged
from s3proxy.core.format import Header, parse_header
from s3proxy.core.headers import HeaderPairs
from s3proxy.core.layout import Discovery, Layout, discover
from s3proxy.core.marker import Marker
from s3proxy.core.request import Target
from s3proxy.core.sizes import FOOTER_SIZE, HEADER_SIZE, TRAILER_SIZE
from s3proxy.store.spans import Span
from s3proxy.upstream.client import Upstream

FETCH_CONCURRENCY = 16  # ranged reads of one request in flight at once


class RangedReads:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def fetch(self, target: Target, first: int, last: int, etag: str | None) -> bytes | None:
        """Stored bytes ``first..last`` of the object whose ETag is ``etag``; ``None`` if the
        upstream has no such range. (An upstream that ignores ``Range`` sends the whole object;
        the range is cut out of it.)"""
        headers: HeaderPairs = [("Range", f"bytes={first}-{last}")]
        if etag:
            headers.append(("If-Match", etag))
        resp = await self.upstream.send("GET", target, headers)
        async with resp:
            if resp.status == 412:
                raise PreconditionChanged("The object changed while s3proxy read it; retry.")
            if resp.status not in (200, 206):
                return None
            skip = first if resp.status == 200 else 0
            span = Span(resp, skip, last - first + 1)
            data = b"".join([chunk async for chunk in span.chunks()])
        return data if len(data) == last - first + 1 else None

    async def layout(
        self,
        target: Target,
        etag: str | None,
        stored_total: int,
        first: Header,
        marker: Marker,
        sealed: dict[int, bytes],
    ) -> Layout:
        """The object's streams. A multipart object's headers are read with the bytes just
        before them: the sealed trailer of the stream that ends there, left in ``sealed`` by
        offset, so a part boundary costs one ranged read, not two."""
        if not marker.multipart:
            single = Layout.from_headers([first])
            if single.stored_length != stored_total:
                raise IntegrityError("The stored object's header does not match its size.")
            return single
        gate = asyncio.Semaphore(FETCH_CONCURRENCY)
        gen: Discovery = discover(stored_total, first)
        try:
            wanted = next(gen)
            while True:
                found = dict(
                    await asyncio.gather(
                        *(self.boundary(target, etag, o, gate, sealed) for o in wanted)
                    )
                )
                wanted = gen.send(found)
        except StopIteration as stop:
            layout: Layout = stop.value
        return layout

    async def boundary(
        self,
        target: Target,
        etag: str | None,
        offset: int,
        gate: asyncio.Semaphore,
        sealed: dict[int, bytes],
    ) -> tuple[int, Header | None]:
        """The stream header at ``offset``, read with the 160 bytes just before it: the footer
        (v3) or, in its last 80 bytes, the trailer (v2) of the stream that ends there, left in
        ``sealed`` by offset (both ways): one ranged read. ``None``: no valid header there."""
        before = max(n for n in (FOOTER_SIZE, TRAILER_SIZE, 0) if offset >= n + HEADER_SIZE)
        async with gate:
            data = await self.fetch(target, offset - before, offset + HEADER_SIZE - 1, etag)
        if data is None:
            return offset, None
        if before:
            sealed[offset - before] = data[:before]
            sealed[offset - TRAILER_SIZE] = data[before - TRAILER_SIZE : before]
        try:
            return offset, parse_header(data[before:])
        except IntegrityError:
            return offset, None

    async def boundaries(
        self, target: Target, etag: str, offsets: list[int], sealed: dict[int, bytes]
    ) -> dict[int, Header | None]:
        """The stream headers at these offsets of the object whose stored ETag is ``etag``,
        each with the trailer before it (in ``sealed``): one ranged read per offset, in
        parallel (CompleteMultipartUpload's check of the parts' order)."""
        gate = asyncio.Semaphore(FETCH_CONCURRENCY)
        jobs = (self.boundary(target, etag, o, gate, sealed) for o in offsets)
        return dict(await asyncio.gather(*jobs))
