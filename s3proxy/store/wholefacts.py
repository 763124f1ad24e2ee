"""A HEAD of a multipart object written in v3 (docs/metadata.md, item 3): its manifest tag (a
sealed record of the whole object, core/wholeobject.py) and its last 160 bytes (the last part's
footer) answer it, without reading a part boundary. The record is bound to the object by the
last stream's salt, the stored size and the part count; whatever does not bind is left to the
full look-up (``None``), which reads and checks every stream."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

from s3proxy.core.errors import IntegrityError
from s3proxy.core.footer import Footer, footer_key_version
from s3proxy.core.layout import Layout, check_name_binding, check_object_shape
from s3proxy.core.marker import Marker
from s3proxy.core.numbers import parse_decimal
from s3proxy.core.objectinfo import ObjectInfo, check_marker
from s3proxy.core.request import Target
from s3proxy.core.sizes import FOOTER_SIZE
from s3proxy.core.wholeobject import WholeObject, is_whole_record
from s3proxy.store.objects import ObjectInspector


def looks_like_footer(end: bytes) -> bool:
    """Whether an object's last bytes end with a v3 footer's clear part (else: a v2 trailer)."""
    try:
        footer_key_version(end[-FOOTER_SIZE:])
    except IntegrityError:
        return False
    return True


def stored_part_count(stored_etag: str | None) -> int | None:
    """The part count a multipart object's stored ETag shows (``"…-N"``), if it shows one."""
    bare = (stored_etag or "").strip().strip('"')
    return parse_decimal(bare.rpartition("-")[2]) if "-" in bare else None


def uniform_layout(facts: WholeObject, last: Footer) -> Layout | None:
    """The object's layout as the record gives it when all parts but the last share a size:
    each stream's header is the last one's with that size (salts and keys unknown, so this
    layout answers sizes only, never a read). ``None`` when the parts differ in size."""
    if facts.parts > 1 and facts.part_size == 0:
        return None
    leading = dataclasses.replace(last.header, plaintext_length=facts.part_size)
    return Layout.from_headers([leading] * (facts.parts - 1) + [last.header])


def settle(task: asyncio.Future[str | None]) -> None:
    """A tag look-up no longer wanted: cancelled if still running, its outcome taken if not
    (an error nobody waited for is no error)."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


class WholeFacts:
    """Look-ups from a v3 manifest, on an :class:`ObjectInspector` (keys, tags, names)."""

    def __init__(self, objects: ObjectInspector) -> None:
        self.objects = objects

    def tag_ahead(
        self, target: Target, stored_etag: str | None
    ) -> asyncio.Future[str | None] | None:
        """The object's manifest tag, asked for now (a task), if its stored ETag shows a
        multipart object; else ``None``. The caller :func:`settle` s it when done."""
        if stored_part_count(stored_etag) is None:
            return None
        return asyncio.ensure_future(self.objects.tags.manifest(target))

    async def info(
        self,
        target: Target,
        stored_total: int,
        stored_etag: str | None,
        end: bytes,
        marker: Marker,
        modified: dt.datetime | None = None,
        tag: asyncio.Future[str | None] | None = None,
    ) -> ObjectInfo | None:
        """What a HEAD needs of the multipart object whose last 160 bytes are ``end``, from
        its manifest tag (``tag``: its value, already asked for; else asked now). ``None``:
        not answered so (no v3 record, or it does not bind to these bytes). Not cached: it
        holds no stream's key or salt, which a read needs."""
        try:
            last = await self.objects.open_footer(end)
        except (IntegrityError, ValueError):
            return None
        if not last.header.manifest_part:
            return None  # (written without a manifest: S3PROXY_MULTIPART_MANIFEST=off)
        value = await (tag if tag is not None else self.objects.tags.manifest(target))
        if value is None or not is_whole_record(value):
            return None
        try:
            facts = await self.objects.manifests.open(value)
        except (IntegrityError, ValueError):
            return None
        layout = self._bound(facts, last, stored_total, stored_etag)
        if layout is None:
            return None
        check_marker(last.header, marker)
        check_object_shape(layout, True)
        unbound_allowed = self.objects.names.unbound_allowed(target, modified)
        check_name_binding(layout, target.bucket or "", target.key or "", unbound_allowed)
        self.objects.saw(target, stored_etag)
        return ObjectInfo(layout, (None,) * facts.parts, facts.etag, facts.object_checksum)

    @staticmethod
    def _bound(
        facts: WholeObject, last: Footer, stored_total: int, stored_etag: str | None
    ) -> Layout | None:
        """The layout the record gives, if the record is this object's: its last stream's
        salt and plaintext size, its stored size and (where the stored ETag shows it) its part
        count."""
        parts = stored_part_count(stored_etag)
        if (
            facts.last_salt != last.header.salt
            or facts.last_part_size != last.header.plaintext_length
            or facts.stored_size != stored_total
            or (parts is not None and parts != facts.parts)
        ):
            return None
        layout = uniform_layout(facts, last)
        if layout is None or layout.stored_length != stored_total:
            return None
        if layout.plaintext_length != facts.plaintext_size:
            return None
        return layout
