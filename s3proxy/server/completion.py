"""CompleteMultipartUpload: the client's plaintext part ETags mapped to the stored parts', the
plaintext ETag of the result, and the manifest of its streams (docs/format.md, Multipart
manifest)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web

from s3proxy.config import Config
from s3proxy.core.errors import (
    InternalError,
    InvalidArgument,
    MissingContentLength,
    S3ProxyError,
)
from s3proxy.core.etags import md5_of_etag, object_etag, same_etag
from s3proxy.core.format import Header, Trailer, parse_header
from s3proxy.core.headers import upstream_request_headers
from s3proxy.core.layout import Layout, check_name_binding, check_object_shape
from s3proxy.core.manifest import manifest_value, needs_manifest
from s3proxy.core.request import Target
from s3proxy.core.s3xml import (
    CompletionParser,
    completion_body,
    listed_parts,
    replace_text,
    set_checksum,
)
from s3proxy.ops import metrics
from s3proxy.server.clientauth import BodyHash
from s3proxy.server.objects import ObjectInfo, ObjectInspector, check_marker, object_checksum
from s3proxy.server.relay import Marker, relay_body
from s3proxy.server.writes import Writer
from s3proxy.upstream.client import Upstream

log = logging.getLogger("s3proxy")

# What a CompleteMultipartUpload of 10,000 parts needs, each with an ETag and two checksums.
COMPLETE_BODY_LIMIT = 4 * 1024 * 1024
COMPLETE_PIECE = 16 * 1024  # bytes parsed between two turns of the event loop
COMPLETIONS_AT_ONCE = 2
MAX_PARTS = 10000


async def _completion_parts(request: web.Request) -> list[tuple[int, str]]:
    """The parts a CompleteMultipartUpload lists, parsed while the body arrives, a piece at a
    time with the event loop free in between; the body is never held whole."""
    parser = CompletionParser()
    signed = BodyHash.of(request)
    received = 0
    async for piece in request.content.iter_chunked(COMPLETE_PIECE):
        received += len(piece)
        if received > COMPLETE_BODY_LIMIT:
            raise InvalidArgument("The CompleteMultipartUpload body is too large.")
        signed.update(piece)
        parser.feed(piece)
        await asyncio.sleep(0)  # a client that sends fast still shares the loop
    signed.verify()
    return parser.close()


class Completer:
    def __init__(
        self, config: Config, upstream: Upstream, objects: ObjectInspector, writer: Writer
    ) -> None:
        self.config = config
        self.upstream = upstream
        self.objects = objects
        self.writer = writer  # (conditional writes: If-Match on the completed object)
        # The proxy's budget, shared out among its workers: with two, four parses at once
        # would take both cores from the requests the bound protects (tests/test_hostile.py).
        self._completions = asyncio.Semaphore(max(1, COMPLETIONS_AT_ONCE // config.ops.workers))

    async def _stored_parts(self, target: Target) -> dict[int, str]:
        """Part number -> stored ETag of every part uploaded so far (ListParts, all pages)."""
        upload = target.param("uploadId") or ""
        found: dict[int, str] = {}
        marker = ""
        for _ in range(MAX_PARTS // 1000 + 1):
            query: list[tuple[str, str | None]] = [("uploadId", upload), ("max-parts", "1000")]
            if marker:
                query.append(("part-number-marker", marker))
            page_target = Target(target.bucket, target.key, tuple(query))
            resp = await self.upstream.send("GET", page_target, [])
            async with resp:
                if resp.status != 200:
                    return found  # Complete itself will report the problem, as S3 would
                page = listed_parts(await resp.read())
            found.update({number: etag for number, etag, _ in page.parts})
            if page.next_marker is None:
                break
            marker = page.next_marker
        return found

    async def complete_multipart(self, request: web.Request, target: Target) -> web.StreamResponse:
        """The client lists each part with the plaintext ETag it was given; the upstream needs
        the stored part's. The result's ETag is the plaintext's, from the streams' trailers."""
        length = request.content_length
        if length is None:
            raise MissingContentLength("You must provide the Content-Length HTTP header.")
        if length > COMPLETE_BODY_LIMIT:
            raise InvalidArgument("The CompleteMultipartUpload body is too large.")
        stored = await self._stored_parts(target)
        async with self._completions:  # few parses share the loop at once, however many wait
            claimed = await _completion_parts(request)
        mapping: dict[int, str] = {}
        plaintext_claims: dict[int, bytes] = {}
        for number, etag in claimed:
            stored_etag = stored.get(number)
            if stored_etag is None:
                continue  # the upstream answers InvalidPart
            md5 = md5_of_etag(etag)
            if same_etag(etag, stored_etag) or md5 is not None:
                mapping[number] = stored_etag
            if md5 is not None and not same_etag(etag, stored_etag):
                plaintext_claims[number] = md5
        # x-amz-mp-object-size is the plaintext's size; the upstream sums ciphertext.
        headers = [
            (k, v)
            for k, v in upstream_request_headers(request.headers.items(), encrypting=True)
            if k.lower() != "x-amz-mp-object-size"
        ]
        await self.writer.if_match_for_upstream(target.without("uploadId"), headers)
        body = completion_body([(n, mapping.get(n, etag)) for n, etag in claimed])
        upstream_resp = await self.upstream.send("POST", target, headers, body)
        async with upstream_resp:
            data = await upstream_resp.read()
            if upstream_resp.status != 200 or b"CompleteMultipartUploadResult" not in data:
                return relay_body(upstream_resp, data)
            version = upstream_resp.headers.get("x-amz-version-id")
            result = target.without("uploadId")
            if version and version != "null":
                result = Target(result.bucket, result.key, (("versionId", version),))
            numbers = [n for n, _ in claimed]
            info = await self._completed(target, result, numbers, plaintext_claims, stored)
            if info is not None and info.etag is not None:
                data = replace_text(data, "ETag", info.etag)
            if info is not None and info.checksum is not None:
                checksum = info.checksum
                data = set_checksum(data, checksum.algorithm, checksum.value, checksum.type)
            return relay_body(upstream_resp, data)

    async def _completed(
        self,
        upload: Target,
        target: Target,
        numbers: list[int],
        claims: dict[int, bytes],
        stored: dict[int, str],
    ) -> ObjectInfo | None:
        """The completed object's plaintext ETag; its layout is cached for the first read once
        its manifest is written. A part whose recorded MD5 differs from the ETag the client
        completed it with is logged: the upstream kept the part's latest upload, as S3 does."""
        try:
            found = await self._completed_info(upload, target, numbers, stored)
        except S3ProxyError as exc:
            if self.config.multipart_manifest:
                raise InternalError(
                    "The object was completed, but its parts could not be read to record its "
                    f"manifest: {exc.message}"
                ) from exc
            log.warning("completed %s, but could not read its layout: %s", target.resource, exc)
            return None
        if found is None:
            return None
        stored_etag, info = found
        layout = info.layout
        if needs_manifest(layout):  # the part list is known now: record it
            first_key = await self.objects.unwrap(layout.streams[0].header.wrapped_key, None)
            await self.objects.tags.write_manifest(target, manifest_value(first_key, layout))
        trailers = info.trailers
        if len(trailers) == len(numbers):
            for number, trailer in zip(numbers, trailers, strict=True):
                claim = claims.get(number)
                if claim is not None and trailer is not None and trailer.md5 != claim:
                    metrics.INTEGRITY_FAILURES.inc()
                    log.error(
                        "%s: part %d was completed with an ETag its stored bytes do not have",
                        target.resource,
                        number,
                        extra={"integrity": True},
                    )
        self.objects.remember(target.without("versionId"), stored_etag, info)
        if target.has("versionId"):
            self.objects.remember(target, stored_etag, info)
        return info

    async def _completed_info(
        self, upload: Target, target: Target, numbers: list[int], stored: dict[int, str]
    ) -> tuple[str, ObjectInfo] | None:
        """The completed object's stored ETag and info: the first 256 bytes (its marker, size
        and first header), then the parts this process uploaded itself if ListParts showed
        each with the stored ETag its UploadPart was answered, else the object's parts read
        back (one ranged read per part boundary)."""
        found = await self.objects.first_header(target, [])
        if isinstance(found, aiohttp.ClientResponse):
            found.release()
            return None
        marker, stored_total, head, probe = found
        first = parse_header(head)
        stored_etag = probe.headers.get("ETag", "")
        check_marker(first, marker)
        info = self._from_own_parts(upload, numbers, stored, marker, first, stored_total)
        self.objects.forget_parts(upload, numbers)
        if info is None:
            info = await self.objects.build(
                target, stored_etag, stored_total, first, marker, manifest=False
            )
        return stored_etag, info

    def _from_own_parts(
        self,
        upload: Target,
        numbers: list[int],
        stored: dict[int, str],
        marker: Marker,
        first: Header,
        stored_total: int,
    ) -> ObjectInfo | None:
        """The completed object's info from the streams this process sealed for its parts, if
        it sealed every one and they tile the stored object (docs/design.md, Reading without a
        probe); ``None`` otherwise."""
        streams: list[Header] = []
        trailers: list[Trailer] = []
        for number in numbers:
            own = self.objects.own_part(upload, number)
            listed = stored.get(number)
            if own is None or listed is None or not same_etag(own[0], listed):
                return None
            streams.append(own[1])
            trailers.append(own[2])
        if not streams:
            return None
        layout = Layout.from_headers(streams)
        if layout.streams[0].header != first or layout.stored_length != stored_total:
            return None
        check_object_shape(layout, marker.multipart)
        check_name_binding(layout, upload.bucket or "", upload.key or "")
        sealed = tuple(trailers)
        etag = object_etag([t.md5 for t in sealed], marker.multipart)
        return ObjectInfo(layout, sealed, etag, object_checksum(layout, sealed, marker))
