"""A single v3 stream's layout from its first header and the shared cache's summary
(docs/metadata.md, GET whole): a whole GET of a large object then needs no footer read before
its answer. The footer still ends the body: the reader opens it and checks it records what the
summary said before the last plaintext goes out (StreamInfo.record)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt

from s3proxy.core.format import CHECKSUM_CODES, Header, Trailer
from s3proxy.core.layout import Layout, check_name_binding, check_object_shape
from s3proxy.core.marker import Marker
from s3proxy.core.objectinfo import ObjectInfo, ObjectSummary, check_marker
from s3proxy.core.objectsums import FULL_OBJECT
from s3proxy.core.request import Target
from s3proxy.store.objects import ObjectInspector
from s3proxy.store.sharedfacts import identity


async def info_from_shared(
    objects: ObjectInspector,
    target: Target,
    stored_etag: str | None,
    stored_total: int,
    first: Header,
    marker: Marker,
    modified: dt.datetime | None = None,
) -> ObjectInfo | None:
    """The info of a single-stream v3 object whose header ``first`` opens its stored bytes,
    from the shared cache's entry for exactly this object; None: no cache, no entry, or one
    that does not fit the header (then the caller reads the footer as without a cache)."""
    if not objects.shared.enabled or marker.multipart or not first.has_footer:
        return None
    summary = await objects.shared.find(identity(target, stored_etag, stored_total))
    record = None if summary is None else _record(summary)
    if summary is None or record is None:
        return None
    check_marker(first, marker)
    layout = Layout.from_headers([first])
    if layout.stored_length != stored_total or layout.plaintext_length != summary.size:
        return None
    check_object_shape(layout, False)
    unbound_allowed = objects.names.unbound_allowed(target, modified)
    check_name_binding(layout, target.bucket or "", target.key or "", unbound_allowed)
    stream = dataclasses.replace(layout.streams[0], record=record)
    return ObjectInfo(Layout((stream,)), (record,), summary.etag, summary.checksum)


def _record(summary: ObjectSummary) -> Trailer | None:
    """What the stream's footer must record for ``summary`` to be true of it: its plaintext
    MD5 (a single stream's ETag) and checksum. None where a summary cannot say (not an MD5)."""
    etag = (summary.etag or "").strip('"')
    try:
        md5 = bytes.fromhex(etag)
    except ValueError:
        return None
    if len(md5) != 16:
        return None
    checksum = summary.checksum
    if checksum is None:
        return Trailer(md5)
    if checksum.type != FULL_OBJECT or checksum.algorithm not in CHECKSUM_CODES:
        return None
    try:
        value = base64.b64decode(checksum.value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return Trailer(md5, checksum.algorithm, value)
