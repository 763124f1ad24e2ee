"""What a read of an encrypted object answers (GetObject, HeadObject, and both with
``?partNumber``), decided before a byte of plaintext is fetched. Pure: what the client asked,
the object's layout and its validators in; the status, the headers of the plaintext answer and
the stored segments to fetch out.

S3's order, which the proxy keeps: the conditions (412 before 304, core/conditions.py), then
the part number (``InvalidPartNumber``), then ``If-Range`` (a stale validator serves the whole
object with 200), then the ``Range`` itself (416 past the end; a range S3 ignores serves the
whole object). A whole-object answer carries the plaintext's full-object checksum when the
client asked for checksums (``x-amz-checksum-mode: ENABLED``); a range never does, a part read
carries the checksum the client sent with that part.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from s3proxy.core.conditions import evaluate, range_applies
from s3proxy.core.errors import (
    InvalidArgument,
    InvalidPartNumber,
    InvalidRequest,
    NotImplementedByProxy,
    PreconditionFailed,
    RangeError,
)
from s3proxy.core.headers import HeaderPairs
from s3proxy.core.layout import ReadPlan
from s3proxy.core.marker import Marker
from s3proxy.core.numbers import parse_decimal
from s3proxy.core.objectinfo import ObjectInfo, ObjectSummary
from s3proxy.core.sizes import RangeNotSatisfiable, parse_range

NOT_MODIFIED = 304


def content_range(first: int, last: int, total: int) -> str:
    """The ``Content-Range`` of plaintext bytes ``first..last`` of an object of ``total``."""
    return f"bytes {first}-{last}/{total}"


@dataclass(frozen=True)
class ReadQuery:
    """What the client asked of a read, apart from the headers that go upstream."""

    range: str | None = None
    conditions: tuple[tuple[str, str], ...] = ()  # If-Match, If-None-Match, If-(Un)Modified-Since
    if_range: str | None = None
    part_number: int | None = None
    checksum_mode: bool = False  # x-amz-checksum-mode: ENABLED
    body: bool = True  # GET; False for HEAD

    @classmethod
    def of(
        cls,
        headers: Mapping[str, str],
        conditions: Iterable[tuple[str, str]],
        *,
        part_number: str | None = None,
        body: bool = True,
    ) -> ReadQuery:
        """The query of a request whose headers are ``headers`` (a case-insensitive mapping)
        and whose conditions were taken from them. A ``partNumber`` is checked as S3 checks
        it before anything is read: 1 to 10,000, and never with a ``Range``."""
        number = None
        if part_number is not None:
            number = parse_decimal(part_number, low=1, high=10000)
            if number is None:
                raise InvalidArgument(
                    "Part number must be an integer between 1 and 10000, inclusive"
                )
            if headers.get("Range") is not None:
                raise InvalidRequest(
                    "Cannot specify both Range header and partNumber query parameter"
                )
        return cls(
            range=headers.get("Range"),
            conditions=tuple(conditions),
            if_range=headers.get("If-Range"),
            part_number=number,
            checksum_mode=headers.get("x-amz-checksum-mode", "").upper() == "ENABLED",
            body=body,
        )


@dataclass(frozen=True)
class ReadAnswer:
    """The plaintext answer to a read: everything but the headers the store's response gives
    (Last-Modified, metadata, …), which the shell copies over with the plaintext ETag."""

    status: int  # 200, 206 or NOT_MODIFIED
    etag: str | None  # the plaintext ETag (a v1 object: the stored one)
    length: int  # Content-Length of the answer
    content_range: str | None
    headers: HeaderPairs  # checksums, x-amz-mp-parts-count
    plan: ReadPlan | None  # the stored segments to fetch and decrypt; None: no body to send
    hidden_tags: int  # how many of the object's tags are the proxy's own (its manifest)


def plan_read(
    query: ReadQuery,
    info: ObjectInfo | ObjectSummary,
    marker: Marker | None,
    stored_etag: str | None,
    last_modified: dt.datetime | None,
) -> ReadAnswer:
    """The answer to ``query`` on the object ``info`` describes. Raises
    :class:`PreconditionFailed` (412), :class:`InvalidPartNumber`, :class:`RangeError` (416);
    a 304 is an answer of status :data:`NOT_MODIFIED` with no body. A summary (no layout)
    answers only what needs no layout: no body, no part (:func:`needs_layout`)."""
    if not isinstance(info, ObjectInfo) and needs_layout(query):
        raise ValueError("a read with a body or a part number needs the object's layout")
    if query.part_number is not None:
        assert isinstance(info, ObjectInfo)
        _check_parts_readable(info, marker, stored_etag)
    etag = info.etag or stored_etag
    verdict = None
    if query.conditions:
        verdict = evaluate(dict(query.conditions), etag or "", last_modified)
    if verdict == 412:
        raise PreconditionFailed()
    if verdict == NOT_MODIFIED:
        return ReadAnswer(NOT_MODIFIED, etag, 0, None, [], None, info.hidden_tags)
    if query.part_number is not None:
        assert isinstance(info, ObjectInfo)
        return _plan_part(query, query.part_number, info, marker, etag)
    return plan_span(query, info, marker, etag, last_modified)


def plan_span(
    query: ReadQuery,
    info: ObjectInfo | ObjectSummary,
    marker: Marker | None,
    etag: str | None,
    last_modified: dt.datetime | None,
) -> ReadAnswer:
    """The whole object or the range asked for, its conditions already evaluated: a read of
    a cached layout decides what to fetch before the store's answer shows the conditions'
    validators (``Last-Modified``)."""
    range_value = query.range
    if not range_applies(query.if_range, etag or "", last_modified):
        range_value = None  # a stale If-Range: the whole object, 200
    total = info.size
    span = None
    if range_value is not None:
        try:
            span = parse_range(range_value, total)
        except RangeNotSatisfiable as exc:
            raise RangeError(total) from exc
    tags = info.hidden_tags
    layout = info.layout if isinstance(info, ObjectInfo) and query.body else None
    if span is None:
        checksums = checksum_headers(info, marker) if query.checksum_mode else []
        plan = layout.plan_all() if layout is not None else None  # (empty: still authenticated)
        return ReadAnswer(200, etag, total, None, checksums, plan, tags)
    first, last = span
    plan = layout.plan_range(first, last) if layout is not None else None
    return ReadAnswer(
        206, etag, last - first + 1, content_range(first, last, total), [], plan, tags
    )


def needs_layout(query: ReadQuery) -> bool:
    """Whether answering ``query`` needs the object's layout (a body, or a part number), not
    only its summary (the shared cache's, which answers a plain HEAD)."""
    return query.body or query.part_number is not None


def _check_parts_readable(info: ObjectInfo, marker: Marker | None, stored_etag: str | None) -> None:
    """A multipart object whose stored ETag counts other parts than its streams (parts copied
    from other multipart objects) has no part boundaries the proxy could serve."""
    if marker is None or not marker.multipart:
        return
    suffix = (stored_etag or "").strip('"').rpartition("-")[2]
    if parse_decimal(suffix) not in (None, len(info.layout.streams)):
        raise NotImplementedByProxy(
            "s3proxy does not support this request: partNumber reads of an object whose "
            "parts were copied from other multipart objects"
        )


def _plan_part(
    query: ReadQuery,
    number: int,
    info: ObjectInfo,
    marker: Marker | None,
    etag: str | None,
) -> ReadAnswer:
    """One part of the object as S3 serves it: 206, its place in the whole object in
    Content-Range (none for an empty part), ``x-amz-mp-parts-count`` for a multipart object."""
    layout = info.layout
    parts = len(layout.streams)
    multipart = marker is not None and marker.multipart
    if number > parts:
        raise InvalidPartNumber("The requested partnumber is not satisfiable")
    stream = layout.streams[number - 1]
    headers: HeaderPairs = [("x-amz-mp-parts-count", str(parts))] if multipart else []
    part_checksum = info.part_checksum(number - 1)
    if query.checksum_mode and part_checksum is not None:
        headers.append((f"x-amz-checksum-{part_checksum[0]}", part_checksum[1]))
    length = stream.plaintext_length
    if not length:
        return ReadAnswer(206, etag, 0, None, headers, None, info.hidden_tags)
    first, last = stream.plaintext_offset, stream.plaintext_offset + length - 1
    plan = layout.plan_range(first, last) if query.body else None
    span = content_range(first, last, layout.plaintext_length)
    return ReadAnswer(206, etag, length, span, headers, plan, info.hidden_tags)


def checksum_headers(info: ObjectInfo | ObjectSummary, marker: Marker | None) -> HeaderPairs:
    """The plaintext's full-object checksum as S3 reports it (v2: from the trailer; v1: from
    the proxy's metadata)."""
    if marker is None:
        return []
    if info.checksum is not None:
        return info.checksum.headers
    return marker.checksum_headers() if marker.version == 1 else []
