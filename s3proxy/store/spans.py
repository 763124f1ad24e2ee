"""Fetching exactly the stored bytes a read plan needs, ``If-Match`` the stored ETag the plan
was made on; an upstream that ignores ``Range`` sends the whole object and the span is cut out
of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from s3proxy.core.errors import IntegrityError, PreconditionChanged
from s3proxy.core.headers import HeaderPairs, content_length, content_range_total
from s3proxy.core.layout import ReadPlan
from s3proxy.core.marker import Marker
from s3proxy.core.objectinfo import ObjectInfo
from s3proxy.core.request import Target
from s3proxy.core.sizes import READ_CHUNK
from s3proxy.telemetry.accesslog import count_upstream
from s3proxy.upstream.client import Upstream
from s3proxy.upstream.response import Response


@dataclass(frozen=True)
class Span:
    """A fetched stored range: ``length`` bytes after the first ``skip`` of the response."""

    resp: Response
    skip: int
    length: int

    async def chunks(self) -> AsyncIterator[bytes]:
        skip, left = self.skip, self.length
        async for chunk in self.resp.content.iter_chunked(READ_CHUNK):
            count_upstream(chunk)
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            if skip or len(chunk) - skip > left:
                chunk = chunk[skip : skip + left]
                skip = 0
            left -= len(chunk)
            yield chunk
            if not left:
                return


async def fetch_span(
    upstream: Upstream,
    target: Target,
    headers: HeaderPairs,
    stored_etag: str | None,
    plan: ReadPlan,
) -> Span:
    """GET exactly the stored bytes ``plan`` needs, from the object whose stored ETag is
    ``stored_etag`` (the caller releases ``Span.resp``). An upstream that ignores ``Range``
    sends the whole object; the span is then cut out of it."""
    span_headers = [(k, v) for k, v in headers if not k.lower().startswith("if-")]
    if stored_etag:
        span_headers.append(("If-Match", stored_etag))
    span_headers.append(("Range", f"bytes={plan.stored_first}-{plan.stored_last}"))
    resp = await upstream.send("GET", target, span_headers)
    length = plan.stored_last - plan.stored_first + 1
    if resp.status == 206:
        return Span(resp, 0, length)
    if resp.status == 200:
        return Span(resp, plan.stored_first, length)
    resp.release()
    if resp.status == 412:
        raise PreconditionChanged("The object changed while s3proxy read it; retry.")
    raise IntegrityError("The upstream did not return the requested ciphertext range.")


async def known_span(
    upstream: Upstream,
    target: Target,
    headers: HeaderPairs,
    stored_etag: str,
    info: ObjectInfo,
    plan: ReadPlan,
) -> Span | None:
    """GET the stored bytes of ``plan`` (a plan on the cached ``info``) ``If-Match`` the
    stored ETag the info was cached under, without a probe first. ``None`` (nothing kept
    open) unless the upstream answers with exactly that object: the caller forgets the stored
    ETag it last saw and probes.
    The caller releases ``Span.resp``."""
    span_headers = [(k, v) for k, v in headers if not k.lower().startswith("if-")]
    span_headers.append(("If-Match", stored_etag))
    span_headers.append(("Range", f"bytes={plan.stored_first}-{plan.stored_last}"))
    resp = await upstream.send("GET", target, span_headers)
    length = plan.stored_last - plan.stored_first + 1
    try:
        ours = Marker.of(resp.headers) if resp.status in (200, 206) else None
    except IntegrityError:
        ours = None
    if ours is not None and resp.headers.get("ETag") == stored_etag:
        stored_total = (
            content_range_total(resp.headers)
            if resp.status == 206
            else content_length(resp.headers)
        )
        first = info.layout.streams[0].header
        same = first.version == ours.version and first.segment_size == ours.segment_size
        if same and stored_total == info.layout.stored_length:
            return Span(resp, 0 if resp.status == 206 else plan.stored_first, length)
    resp.release()
    return None
