"""CopyObject by re-encryption: the source is read, authenticated, decrypted and written anew
under the destination's name, for copies whose streams are (or must be) bound to their name
(S3PROXY_BIND_OBJECT_NAMES). What S3 copies with an object is carried over by hand: metadata
(unless REPLACE), tags (unless REPLACE), the client's checksum of a single-stream source; the
copy-source date conditions are evaluated here, against the source's Last-Modified."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode

from aiohttp import web

from s3proxy.config import Config
from s3proxy.core.conditions import evaluate
from s3proxy.core.errors import InvalidRequest, PreconditionFailed
from s3proxy.core.format import WHOLE_OBJECT_VERSION
from s3proxy.core.headers import (
    MARKER_HEADER,
    OWN_METADATA_PREFIXES,
    Headers,
    marker_value,
    metadata_directive,
    upstream_request_headers,
)
from s3proxy.core.manifest import MANIFEST_TAG
from s3proxy.core.objectinfo import ObjectInfo
from s3proxy.core.request import Target
from s3proxy.core.s3xml import copy_result
from s3proxy.server.relay import no_bytes, relay_body
from s3proxy.server.writes import Checksum, Writer
from s3proxy.store.objects import Current, ObjectInspector
from s3proxy.upstream.client import Upstream
from s3proxy.upstream.response import Response

MAX_COPY_SOURCE = 5 * 1024**3  # S3's limit for CopyObject
# What S3 copies with an object's metadata (COPY directive), besides x-amz-meta-*.
_COPIED = (
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
    "x-amz-website-redirect-location",
)
_COPY_ONLY = ("x-amz-metadata-directive", "x-amz-tagging-directive", "x-goog-metadata-directive")


def must_reencrypt(config: Config, info: ObjectInfo, source: Target, dest: Target) -> bool:
    """Whether a copy to ``dest`` must go through the proxy: the source's streams are bound to
    its name, or new streams are to be bound, and the name changes; or new streams are to be
    bound and the source has unbound ones (read within S3PROXY_UNBOUND_*): a copy onto itself
    then binds it, where the store's copy would keep it unbound and, newly modified, outside
    S3PROXY_UNBOUND_BEFORE."""
    if (source.bucket, source.key) == (dest.bucket, dest.key):
        return config.bind_names and not all(s.header.name_bound for s in info.layout.streams)
    return config.bind_names or any(s.header.name_bound for s in info.layout.streams)


def _is_metadata(name: str) -> bool:
    lname = name.lower()
    return lname.startswith("x-amz-meta-") or lname in _COPIED


def _is_copy_only(name: str) -> bool:
    """What asks the store for a copy: the proxy's request writes an object instead."""
    lname = name.lower()
    return lname.startswith("x-amz-copy-source") or lname in _COPY_ONLY


def _source_conditions(request: web.Request, last_modified: dt.datetime | None) -> None:
    """x-amz-copy-source-if-(un)modified-since (the ETag conditions were checked already and
    are kept as an If-Match on the stored ETag)."""
    conditions = {
        name: request.headers[f"x-amz-copy-source-{name}"]
        for name in ("if-modified-since", "if-unmodified-since")
        if f"x-amz-copy-source-{name}" in request.headers
    }
    if evaluate(conditions, "", last_modified) is not None:
        raise PreconditionFailed()


async def copy_response(resp: Response, element: str, etag: str) -> web.Response:
    """The answer to a copy the proxy wrote itself: S3's ``element`` (CopyObjectResult or
    CopyPartResult) with the new plaintext ETag, or the upstream's error as it is."""
    async with resp:
        body = await resp.read()
        if resp.status != 200:
            return relay_body(resp, body)
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        result = copy_result(element, etag, now)
        return relay_body(resp, result, [("Content-Type", "application/xml")])


@dataclass(frozen=True)
class CopyContext:
    """What the copies share (server/copies.py, and the re-encrypting copy here): built once per
    proxy by server/app.py."""

    config: Config
    upstream: Upstream
    objects: ObjectInspector
    writer: Writer


class CopyByReencryption:
    def __init__(self, context: CopyContext) -> None:
        self.context = context

    async def copy(
        self, request: web.Request, target: Target, source: Current, info: ObjectInfo
    ) -> web.StreamResponse:
        if info.size > MAX_COPY_SOURCE:
            raise InvalidRequest(
                "The specified copy source is larger than the maximum allowable size for a "
                f"copy source: {MAX_COPY_SOURCE}"
            )
        source_headers, last_modified = await self._source_headers(source)
        _source_conditions(request, last_modified)
        headers = await self._headers(request, source, source_headers)
        checksum: Checksum = None
        trailer = info.trailers[0] if len(info.trailers) == 1 else None
        if trailer is not None and trailer.checksum_algorithm is not None:
            checksum = (trailer.checksum_algorithm, trailer.checksum)
        plaintext: AsyncIterator[bytes] = no_bytes()
        if info.size:
            plan = info.layout.plan_range(0, info.size - 1)
            plaintext = self.context.objects.plaintext(source.target, source.stored_etag, plan)
        writer = self.context.writer
        written = await writer.put_stream(
            target, headers, info.size, plaintext, lambda: checksum, whole_object=True
        )
        await writer.keep_written(target, written)
        return await copy_response(written.response, "CopyObjectResult", written.etag)

    async def _headers(
        self, request: web.Request, source: Current, source_headers: Headers
    ) -> Headers:
        """The new object's headers: the client's, less what asks for a copy; the source's
        metadata and tags unless the client replaces them; the proxy's marker."""
        forwarded = upstream_request_headers(request.headers.items(), encrypting=True)
        headers = Headers((k, v) for k, v in forwarded if not _is_copy_only(k))
        if metadata_directive(request.headers) != "REPLACE":
            headers = Headers((k, v) for k, v in headers if not _is_metadata(k))
            headers = headers.plus((k, v) for k, v in source_headers if _is_metadata(k))
        directive = request.headers.get("x-amz-tagging-directive", "COPY").strip().upper()
        if directive != "REPLACE":
            headers = headers.without("x-amz-tagging")
            tags = await self._source_tags(source)
            if tags:
                headers = headers.plus([("x-amz-tagging", urlencode(tags))])
        marker = marker_value(self.context.config.segment_size, version=WHOLE_OBJECT_VERSION)
        return headers.plus([(MARKER_HEADER, marker)])

    async def _source_headers(self, source: Current) -> tuple[Headers, dt.datetime | None]:
        resp = await self.context.upstream.send(
            "HEAD", source.target, [("If-Match", source.stored_etag)], None
        )
        async with resp:
            if resp.status != 200:
                raise PreconditionFailed()  # the source changed since it was inspected
            headers = Headers(
                (k, v)
                for k, v in resp.headers.items()
                if not k.lower().startswith(OWN_METADATA_PREFIXES)
            )
            try:
                modified = parsedate_to_datetime(resp.headers.get("Last-Modified", ""))
            except (TypeError, ValueError, IndexError):
                modified = None
            return headers, modified

    async def _source_tags(self, source: Current) -> list[tuple[str, str]]:
        tags = await self.context.objects.tags.read(source.target) or []
        return [(k, v) for k, v in tags if k != MANIFEST_TAG]
