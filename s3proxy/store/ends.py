"""What an object's last stored bytes tell (docs/metadata.md): a HEAD's and a listing's
look-up starts with ``GET Range: bytes=-160``, whose answer carries the object's metadata and,
in ``Content-Range``, its stored size; a v3 single-stream object's footer is in those bytes and
answers the rest without another request."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from s3proxy.core.errors import IntegrityError, PreconditionChanged
from s3proxy.core.etags import object_etag
from s3proxy.core.headers import HeaderPairs, content_range_total
from s3proxy.core.layout import Layout, check_name_binding, check_object_shape
from s3proxy.core.marker import Marker
from s3proxy.core.objectinfo import ObjectInfo, ObjectSummary, check_marker, object_checksum
from s3proxy.core.request import Target
from s3proxy.core.sizes import FOOTER_SIZE, HEADER_SIZE
from s3proxy.store.objects import WHOLE_READ_LIMIT, ObjectInspector, last_modified
from s3proxy.store.sharedfacts import identity
from s3proxy.store.wholefacts import WholeFacts, looks_like_footer, settle
from s3proxy.telemetry.accesslog import count_upstream
from s3proxy.upstream import errors as upstream_errors
from s3proxy.upstream.response import Response


@dataclass(frozen=True)
class EndBytes:
    """What the last stored bytes of an object showed (:meth:`ObjectInspector.end_bytes`).
    ``marker`` None: not an object the proxy wrote, no object, or a whole answer: ``resp`` is
    the store's answer, unread."""

    resp: Response
    marker: Marker | None = None
    stored_total: int = 0
    end: bytes = b""


class EndReader:
    """Look-ups from an object's end, on an :class:`ObjectInspector` (its caches, keys and
    upstream)."""

    def __init__(self, objects: ObjectInspector) -> None:
        self.objects = objects

    async def info_from_footer(
        self,
        target: Target,
        stored_total: int,
        stored_etag: str | None,
        footer_bytes: bytes,
        marker: Marker,
        modified: dt.datetime | None = None,
    ) -> ObjectInfo:
        """What a HEAD needs of a single-stream v3 object, from its footer alone (the object's
        last 160 bytes): checked as a read checks the header (marker, size, shape, name). Not
        cached: the footer holds no wrapped key, which a read of the segments needs."""
        footer = await self.objects.open_footer(footer_bytes)
        check_marker(footer.header, marker)
        layout = Layout.from_headers([footer.header])
        if layout.stored_length != stored_total:
            raise IntegrityError("The stored object's size is not the one its footer records.")
        check_object_shape(layout, marker.multipart)
        unbound_allowed = self.objects.names.unbound_allowed(target, modified)
        check_name_binding(layout, target.bucket or "", target.key or "", unbound_allowed)
        trailers = (footer.trailer,)
        etag = object_etag([footer.trailer.md5], False)
        self.objects.saw(target, stored_etag)
        return ObjectInfo(layout, trailers, etag, object_checksum(layout, trailers, marker))

    @asynccontextmanager
    async def end_bytes(self, target: Target, headers: HeaderPairs) -> AsyncIterator[EndBytes]:
        """GET the object's last 160 bytes (``Range: bytes=-160``; a v3 stream's footer). Ours:
        its marker, stored size (from ``Content-Range``) and the bytes, the response released.
        Otherwise (no object, not ours, a store that ignores ``Range``) the response, unread."""
        resp = await self.objects.upstream.send(
            "GET", target, [*headers, ("Range", f"bytes=-{FOOTER_SIZE}")]
        )
        async with resp:
            marker = Marker.of(resp.headers) if resp.status == 206 else None
            if marker is None:
                yield EndBytes(resp)
                return
            stored_total = content_range_total(resp.headers)
            if stored_total is None:
                raise IntegrityError("The upstream did not report the stored object's size.")
            with upstream_errors.reading():
                end = count_upstream(await resp.content.readexactly(min(FOOTER_SIZE, stored_total)))
            resp.release()
            yield EndBytes(resp, marker, stored_total, end)

    async def described_at_end(
        self,
        target: Target,
        resp: Response,
        marker: Marker,
        stored_total: int,
        end: bytes = b"",
        summary_ok: bool = False,
    ) -> ObjectInfo | ObjectSummary:
        """As :meth:`info_at_end`; where that would take more requests than the footer in
        ``end`` and ``summary_ok`` (the answer needs no layout: a HEAD), the shared cache's
        summary first. What was looked up is written through to the shared cache."""
        info = self._cached(target, resp, marker, stored_total)
        if info is not None:
            return info
        stored_etag = resp.headers.get("ETag")
        shared = self.objects.shared
        stored = identity(target, stored_etag, stored_total)
        answered_by_end = _footer_answers(marker, end)
        if summary_ok and shared.enabled and not answered_by_end:
            summary = await shared.find(stored)
            if summary is not None:
                self.objects.saw(target, stored_etag)
                return summary
        info = await self.looked_up_at_end(target, resp, marker, stored_total, end)
        if stored_etag and not answered_by_end:  # (the others' HEADs read the footer anyway)
            await shared.publish(stored, info.summary)
        return info

    def _cached(
        self, target: Target, resp: Response, marker: Marker, stored_total: int
    ) -> ObjectInfo | None:
        """The info this process holds of the object ``resp`` answered for, if any."""
        info = self.objects.cached(target, resp.headers.get("ETag"), stored_total, None)
        if info is not None:
            check_marker(info.layout.streams[0].header, marker)
        return info

    async def info_at_end(
        self,
        target: Target,
        resp: Response,
        marker: Marker,
        stored_total: int,
        end: bytes = b"",
        tag: asyncio.Future[str | None] | None = None,
    ) -> ObjectInfo:
        """The info of the object ``resp`` answered for (a HEAD, or :meth:`end_bytes`): cached;
        from the footer in ``end`` (v3, one stream: no other request); a v3 multipart object's
        from that footer and its manifest tag (``tag``: already asked for, else asked now); or
        built from its first bytes read now (a v2 stream's trailer found in ``end``). The marker
        alone never decides a size (docs/design.md, Reading)."""
        info = self._cached(target, resp, marker, stored_total)
        if info is not None:
            return info
        return await self.looked_up_at_end(target, resp, marker, stored_total, end, tag)

    async def looked_up_at_end(
        self,
        target: Target,
        resp: Response,
        marker: Marker,
        stored_total: int,
        end: bytes = b"",
        tag: asyncio.Future[str | None] | None = None,
    ) -> ObjectInfo:
        """:meth:`info_at_end` for an object not in this process's cache."""
        stored_etag = resp.headers.get("ETag")
        if _footer_answers(marker, end):
            modified = last_modified(resp)
            return await self.info_from_footer(
                target, stored_total, stored_etag, end, marker, modified
            )
        if end and marker.multipart and looks_like_footer(end):
            whole = WholeFacts(self.objects)
            modified = last_modified(resp)
            found = await whole.info(target, stored_total, stored_etag, end, marker, modified, tag)
            if found is not None:
                return found
        same = [("If-Match", stored_etag)] if stored_etag else []
        # A small single stream is read whole: its trailer comes with its header.
        small = not marker.multipart and stored_total <= WHOLE_READ_LIMIT
        length = stored_total if small else HEADER_SIZE
        async with self.objects.probing(target, same, length=length, end=end) as probe:
            if probe.info is None:
                raise PreconditionChanged("The object changed while s3proxy read it; retry.")
            info = probe.info
        if info.layout.stored_length != stored_total:
            raise IntegrityError("The stored object's streams do not add up to its size.")
        return info

    async def looked_up(
        self, target: Target, headers: HeaderPairs, stored_etag: str | None = None
    ) -> ObjectInfo | None:
        """The info of an object from its end (``None``: not the proxy's). Given a stored ETag
        that shows a multipart object (a listing's), its manifest tag is asked for at the same
        time as the end: a v3 multipart object then costs one round trip (one of v2 parts asks
        for the tag again in its full look-up)."""
        tag = WholeFacts(self.objects).tag_ahead(target, stored_etag)
        try:
            async with self.end_bytes(target, headers) as found:
                if found.marker is None:
                    return None
                return await self.info_at_end(
                    target, found.resp, found.marker, found.stored_total, found.end, tag
                )
        finally:
            if tag is not None:
                settle(tag)


def _footer_answers(marker: Marker, end: bytes) -> bool:
    """Whether the object's last bytes, read, are a single v3 stream's footer: all a HEAD
    needs, without another request."""
    return bool(end) and marker.version >= 3 and not marker.multipart
