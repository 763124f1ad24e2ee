"""Handlers that copy objects: CopyObject and UploadPartCopy keep copies decryptable, answer the
plaintext ETag, and take the client's plaintext ETags in ``x-amz-copy-source-if-*``. A copy
range that is exactly one source stream is copied by the upstream (no object bytes pass through
the proxy); any other range is read, authenticated, decrypted and encrypted anew as the part."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import unquote

from aiohttp import web

from s3proxy.core.conditions import etag_matches
from s3proxy.core.errors import (
    InvalidArgument,
    NotImplementedByProxy,
    PreconditionFailed,
    RangeError,
)
from s3proxy.core.etags import single_etag
from s3proxy.core.headers import (
    CHECKSUM_METADATA,
    MARKER_HEADER,
    Headers,
    marker_value,
    metadata_directive,
    upstream_request_headers,
)
from s3proxy.core.layout import StreamInfo
from s3proxy.core.manifest import MANIFEST_TAG, needs_manifest
from s3proxy.core.numbers import parse_decimal
from s3proxy.core.objectinfo import ObjectInfo
from s3proxy.core.request import Target, parse_target
from s3proxy.core.s3xml import replace_text, root_text, without_checksums
from s3proxy.server.clientauth import discard_body
from s3proxy.server.recopy import CopyByReencryption, CopyContext, copy_response, must_reencrypt
from s3proxy.server.relay import no_bytes, relay, relay_body
from s3proxy.store.objects import Current
from s3proxy.store.sharedfacts import identity

_SOURCE_ETAG_CONDITIONS = ("x-amz-copy-source-if-match", "x-amz-copy-source-if-none-match")
_INVALID_RANGE = (
    "The x-amz-copy-source-range value must be of the form bytes=first-last where first and "
    "last are the zero-based offsets of the first and last bytes to copy"
)


def source_target(request: web.Request) -> Target:
    """The object named by ``x-amz-copy-source`` (``bucket/key[?versionId=…]``)."""
    source = request.headers.get("x-amz-copy-source", "")
    path, _, query = source.partition("?")
    if not path.startswith("/"):
        path = "/" + path
    version = None
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "versionId":
            version = unquote(value)
    src = parse_target(path, None, ())
    if src.key is None:
        raise InvalidArgument("Copy Source must mention the source bucket and key.")
    return Target(src.bucket, src.key, (("versionId", version),) if version else ())


def parse_copy_range(value: str, total: int) -> tuple[int, int]:
    """The inclusive plaintext range of ``x-amz-copy-source-range`` (strict, as S3 parses it)."""
    unit, eq, spec = value.strip().partition("=")
    first_text, dash, last_text = spec.partition("-")
    first, last = parse_decimal(first_text), parse_decimal(last_text)
    if unit != "bytes" or not eq or not dash or first is None or last is None:
        raise InvalidArgument(_INVALID_RANGE)
    if first > last:
        raise InvalidArgument(_INVALID_RANGE)
    if last >= total:
        raise RangeError(total)
    return first, last


def _whole_stream(info: ObjectInfo, first: int, last: int) -> tuple[StreamInfo, int] | None:
    """The v2 or v3 part stream whose plaintext is exactly ``first..last``, with its index (a
    whole object's stream says so in its header, and cannot become a part)."""
    for index, stream in enumerate(info.layout.streams):
        end = stream.plaintext_offset + stream.plaintext_length - 1
        header = stream.header
        if stream.plaintext_offset == first and end == last and header.version >= 2:
            return None if header.whole_object else (stream, index)
    return None


class Copier:
    def __init__(self, context: CopyContext) -> None:
        self.context = context
        self.recopy = CopyByReencryption(context)

    async def _source(
        self, request: web.Request, headers: Headers
    ) -> tuple[Current | None, Headers]:
        """The copy source as the client sees it, and the copy's headers for the upstream: the
        source's ETag conditions are checked here and replaced by a condition on the stored ETag
        of the object they were checked against."""
        current = await self.context.objects.current(source_target(request))
        if current is None:
            return None, headers  # the copy itself reports the missing source, as S3 would
        conditions = {k.lower(): v for k, v in headers if k.lower() in _SOURCE_ETAG_CONDITIONS}
        headers = headers.without(*_SOURCE_ETAG_CONDITIONS)
        if_match = conditions.get("x-amz-copy-source-if-match")
        if_none_match = conditions.get("x-amz-copy-source-if-none-match")
        if if_match is not None and not etag_matches(if_match, current.etag):
            raise PreconditionFailed()
        if if_none_match is not None and etag_matches(if_none_match, current.etag):
            raise PreconditionFailed()
        if current.stored_etag:
            headers = headers.plus([("x-amz-copy-source-if-match", current.stored_etag)])
        return current, headers

    async def copy_object(self, request: web.Request, target: Target) -> web.StreamResponse:
        directive = metadata_directive(request.headers)
        # With REPLACE the client's new metadata replaces all of it; the proxy's marker must
        # survive, so the client's own headers go through the same filter as an upload's.
        forwarded = upstream_request_headers(
            request.headers.items(), encrypting=directive == "REPLACE"
        )
        current, headers = await self._source(request, Headers(forwarded))
        info = current.info if current is not None else None
        marker = current.marker if current is not None else None
        if (
            current is not None
            and info is not None
            and must_reencrypt(self.context.config, info, current.target, target)
        ):
            await discard_body(request)
            return await self.recopy.copy(request, target, current, info)
        if directive == "REPLACE" and marker is not None:
            value = marker_value(
                marker.segment_size, version=marker.version, multipart=marker.multipart
            )
            headers = headers.plus([(MARKER_HEADER, value)])
            if marker.checksum is not None:  # v1 objects keep their checksum in metadata
                headers = headers.plus([(CHECKSUM_METADATA, marker.checksum)])
        if info is not None and needs_manifest(info.layout):
            headers = await self._keep_manifest(request, headers, info)
        await discard_body(request)
        upstream_resp = await self.context.upstream.send("PUT", target, headers, b"")
        async with upstream_resp:
            body = await upstream_resp.read()
            if upstream_resp.status == 200 and info is not None:
                await self._share_copy(target, body, info)
                body = without_checksums(body)  # they are the ciphertext's
                if info.etag is not None:
                    body = replace_text(body, "ETag", info.etag)
            return relay_body(upstream_resp, body)

    async def _share_copy(self, target: Target, result: bytes, info: ObjectInfo) -> None:
        """A copy the store made holds the source's streams: the source's summary is the
        copy's, written through to the shared cache under the copy's stored ETag."""
        shared = self.context.objects.shared
        if not shared.enabled:
            return
        stored_etag = root_text(result, "ETag")
        if stored_etag:
            stored = identity(target, stored_etag, info.layout.stored_length)
            await shared.publish(stored, info.summary)

    async def _keep_manifest(
        self, request: web.Request, headers: Headers, info: ObjectInfo
    ) -> Headers:
        """The copy's headers, keeping the manifest: a copy holds the source's streams, so the
        source's manifest stays true for it; tags are copied with the object unless the client
        replaces them, and then the proxy adds the manifest to the client's tags."""
        directive = request.headers.get("x-amz-tagging-directive", "COPY").strip().upper()
        if directive != "REPLACE":
            return headers
        value = await self.context.objects.manifests.value_for(info)
        tagging = request.headers.get("x-amz-tagging", "")
        own = f"{MANIFEST_TAG}={value}"
        return headers.replace("x-amz-tagging", f"{tagging}&{own}" if tagging else own)

    async def upload_part_copy(self, request: web.Request, target: Target) -> web.StreamResponse:
        forwarded = upstream_request_headers(request.headers.items(), encrypting=False)
        current, headers = await self._source(request, Headers(forwarded))
        if current is None:
            await discard_body(request)
            upstream_resp = await self.context.upstream.send("PUT", target, headers, b"")
            async with upstream_resp:
                return await relay(request, upstream_resp)
        info = current.info
        if info is None:
            raise NotImplementedByProxy(
                "s3proxy does not support this request: UploadPartCopy from an object that is "
                "not encrypted by s3proxy would mix plaintext into an encrypted object"
            )
        await discard_body(request)
        range_value = request.headers.get("x-amz-copy-source-range")
        if range_value is None:
            first, last = 0, info.size - 1
        else:
            first, last = parse_copy_range(range_value, info.size)
        whole = _whole_stream(info, first, last) if info.size else None
        if must_reencrypt(self.context.config, info, current.target, target):
            whole = None  # the part's stream is bound to the new name
        if whole is not None:
            return await self._copy_stream(request, target, headers, info, *whole)
        return await self._reencrypt(target, current, info, first, last)

    async def _copy_stream(
        self,
        request: web.Request,
        target: Target,
        headers: Headers,
        info: ObjectInfo,
        stream: StreamInfo,
        index: int,
    ) -> web.StreamResponse:
        """The upstream copies the stream's stored bytes; its trailer already holds the MD5."""
        end = stream.stored_offset + stream.stored_length - 1
        stored_range = f"bytes={stream.stored_offset}-{end}"
        headers = headers.replace("x-amz-copy-source-range", stored_range)
        upstream_resp = await self.context.upstream.send("PUT", target, headers, b"")
        async with upstream_resp:
            body = await upstream_resp.read()
            trailer = info.trailers[index]
            if upstream_resp.status == 200:
                body = without_checksums(body)  # they are the ciphertext's
            if upstream_resp.status == 200 and trailer is not None:
                body = replace_text(body, "ETag", single_etag(trailer.md5))
            return relay_body(upstream_resp, body)

    async def _reencrypt(
        self, target: Target, current: Current, info: ObjectInfo, first: int, last: int
    ) -> web.StreamResponse:
        """Any other range: decrypted (authenticated) and encrypted as a new part stream."""
        if info.size == 0:
            plaintext: AsyncIterator[bytes] = no_bytes()
        else:
            plan = info.layout.plan_range(first, last)
            plaintext = self.context.objects.plaintext(current.target, current.stored_etag, plan)
        written = await self.context.writer.put_stream(
            target, Headers(), last - first + 1, plaintext, whole_object=False
        )
        return await copy_response(written.response, "CopyPartResult", written.etag)
