"""Handlers that write objects: PutObject and UploadPart (encrypt while streaming, answer the
plaintext's MD5 as ETag), CreateMultipartUpload, and CompleteMultipartUpload (the client's
plaintext part ETags mapped to the stored parts', the plaintext ETag of the result)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import cast

import aiohttp
from aiohttp import web

from s3proxy.config import Config
from s3proxy.core.awschunked import STREAMING_PAYLOADS, AwsChunkedDecoder
from s3proxy.core.checksums import CHECKSUM_ALGORITHMS, BodyVerifier, new_hasher, verifier_for
from s3proxy.core.conditions import etag_matches
from s3proxy.core.errors import (
    InternalError,
    InvalidArgument,
    InvalidRequest,
    MissingContentLength,
    NotImplementedByProxy,
    PreconditionFailed,
    S3ProxyError,
)
from s3proxy.core.etags import md5_of_etag, object_etag, same_etag, single_etag
from s3proxy.core.format import (
    WRITE_VERSION,
    Header,
    StreamEncryptor,
    Trailer,
    name_binding,
    parse_header,
)
from s3proxy.core.headers import (
    MARKER_HEADER,
    Headers,
    get_header,
    marker_value,
    upstream_request_headers,
)
from s3proxy.core.layout import Layout, check_name_binding, check_object_shape
from s3proxy.core.manifest import manifest_value, needs_manifest
from s3proxy.core.numbers import parse_decimal
from s3proxy.core.objectsums import default_type, valid_type
from s3proxy.core.request import Target
from s3proxy.core.s3xml import (
    CompletionParser,
    completion_body,
    listed_parts,
    replace_text,
    set_checksum,
)
from s3proxy.core.sizes import ciphertext_length
from s3proxy.core.trailing import PAYLOAD as TRAILING_PAYLOAD
from s3proxy.core.trailing import TrailingChecksumFramer
from s3proxy.keys.transit import KeyService
from s3proxy.ops import metrics
from s3proxy.server.bodies import body_chunks
from s3proxy.server.clientauth import BodyHash, chunk_signatures, discard_body
from s3proxy.server.objects import ObjectInfo, ObjectInspector, check_marker, object_checksum
from s3proxy.server.relay import READ_CHUNK, Marker, relay_body
from s3proxy.upstream.client import Upstream

log = logging.getLogger("s3proxy")

# What a CompleteMultipartUpload of 10,000 parts needs, each with an ETag and two checksums.
COMPLETE_BODY_LIMIT = 4 * 1024 * 1024
SINGLE_SEND_LIMIT = 64 * 1024  # plaintext bytes sealed whole and sent in one write
COMPLETE_PIECE = 16 * 1024  # bytes parsed between two turns of the event loop
COMPLETIONS_AT_ONCE = 2
MAX_PARTS = 10000

Checksum = tuple[str, bytes] | None


def is_aws_chunked(headers: Mapping[str, str]) -> bool:
    """Whether the body is aws-chunked framing; unknown streaming variants are refused."""
    sha = headers.get("x-amz-content-sha256", "").upper()
    encoding = headers.get("Content-Encoding", "").lower()
    if sha.startswith("STREAMING-") and sha not in STREAMING_PAYLOADS:
        raise NotImplementedByProxy(f"s3proxy does not support the payload type {sha}.")
    return sha in STREAMING_PAYLOADS or "aws-chunked" in encoding


def _plaintext_length(request: web.Request, chunked: bool) -> int:
    if chunked:
        decoded = parse_decimal(request.headers.get("x-amz-decoded-content-length"))
        if decoded is None:
            raise MissingContentLength(
                "You must provide the x-amz-decoded-content-length header with aws-chunked bodies."
            )
        return decoded
    if request.content_length is None:
        raise MissingContentLength("You must provide the Content-Length HTTP header.")
    return request.content_length


async def _client_plaintext(
    request: web.Request, decoder: AwsChunkedDecoder | None, verifier: BodyVerifier
) -> AsyncIterator[bytes]:
    """The request body as plaintext, fed to the client's digests; it ends only after every
    digest (header or trailer) has matched."""
    signed = BodyHash.of(request)  # a signed payload hash (client authentication)
    async for chunk in body_chunks(request, READ_CHUNK):  # (idle timeout: RequestTimeout)
        signed.update(chunk)
        plain = decoder.feed(chunk) if decoder is not None else chunk
        verifier.update(plain)
        yield plain
    if decoder is not None:
        decoder.finish()
        verifier.trailers_arrived(decoder.trailers)
    signed.verify()
    verifier.verify()


def _with_aws_chunked(headers: Headers) -> Headers:
    """The headers with ``aws-chunked`` first in ``Content-Encoding`` (S3 removes it again)."""
    encoding = get_header(headers, "Content-Encoding")
    rest = [(k, v) for k, v in headers if k.lower() != "content-encoding"]
    value = "aws-chunked" + (f",{encoding}" if encoding else "")
    return [*rest, ("Content-Encoding", value)]


def _requested_checksum(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """The (algorithm, type) a CreateMultipartUpload asks for, checked as S3 checks it."""
    algorithm = headers.get("x-amz-checksum-algorithm")
    if algorithm is None:
        return None
    name = algorithm.strip().lower()
    if name not in CHECKSUM_ALGORITHMS:
        raise InvalidRequest(f"Checksum algorithm {algorithm} is not supported.")
    kind = (headers.get("x-amz-checksum-type") or default_type(name)).strip().upper()
    if not valid_type(name, kind):
        raise InvalidRequest(f"The {kind} checksum type cannot be used with {algorithm}.")
    return name, kind


async def _completion_parts(request: web.Request) -> list[tuple[int, str]]:
    """The parts a CompleteMultipartUpload lists, parsed while the body arrives, a piece at a
    time with the event loop free in between; the body is never held whole."""
    parser = CompletionParser()
    signed = BodyHash.of(request)
    received = 0
    async for piece in body_chunks(request, COMPLETE_PIECE, held=True):
        received += len(piece)
        if received > COMPLETE_BODY_LIMIT:
            raise InvalidArgument("The CompleteMultipartUpload body is too large.")
        signed.update(piece)
        parser.feed(piece)
        await asyncio.sleep(0)  # a client that sends fast still shares the loop
    signed.verify()
    return parser.close()


Chunk = bytes | bytearray | memoryview


def _unframed(data: Chunk) -> Chunk:
    return data


class Writer:
    def __init__(
        self, config: Config, keys: KeyService, upstream: Upstream, objects: ObjectInspector
    ) -> None:
        self.config = config
        self.keys = keys
        self.upstream = upstream
        self.objects = objects
        # The proxy's budget, shared out among its workers: with two, four parses at once
        # would take both cores from the requests the bound protects (tests/test_hostile.py).
        self._completions = asyncio.Semaphore(max(1, COMPLETIONS_AT_ONCE // config.ops.workers))

    async def put_stream(
        self,
        target: Target,
        headers: Headers,
        length: int,
        plaintext: AsyncIterator[bytes],
        checksum: Callable[[], Checksum] = lambda: None,
        *,
        whole_object: bool,
        sealed: Callable[[Header, Trailer], None] | None = None,
    ) -> tuple[aiohttp.ClientResponse, str]:
        """PUT ``length`` bytes of plaintext upstream as one stream (a whole object, or a part;
        parts carry the manifest flag when the proxy records manifests). The final segment (and
        so a complete upstream request) is sent only after ``plaintext`` ended without error;
        the stream's trailer records ``checksum()``. Returns the upstream response (to be
        released by the caller) and the plaintext's ETag."""
        seg = self.config.segment_size
        data_key = await self.keys.new_data_key(length)
        encryptor = StreamEncryptor(
            data_key.plaintext,
            data_key.wrapped,
            length,
            seg,
            whole_object=whole_object,
            manifest_part=not whole_object and self.config.multipart_manifest,
            binding=(
                name_binding(target.bucket or "", target.key or "")
                if self.config.bind_names
                else None
            ),
        )
        if length <= SINGLE_SEND_LIMIT:
            return await self._put_small(target, headers, plaintext, checksum, encryptor, sealed)
        failure: list[S3ProxyError] = []
        framer = None
        stored = ciphertext_length(length, seg, WRITE_VERSION)
        sent, payload = stored, None
        if self.config.upstream_checksum is not None:
            framer = TrailingChecksumFramer(self.config.upstream_checksum, stored)
            sent = framer.length
            payload = TRAILING_PAYLOAD
            headers = [*_with_aws_chunked(headers), *framer.headers]
            headers.append(("x-amz-decoded-content-length", str(stored)))
        frame = framer.frame if framer is not None else _unframed

        async def body() -> AsyncIterator[Chunk]:
            try:
                yield frame(encryptor.header)
                async for plain in plaintext:
                    out = encryptor.feed(plain)
                    if out:
                        yield frame(out)
                found = checksum()
                last = encryptor.finish(*found) if found is not None else encryptor.finish()
                if sealed is not None and encryptor.md5 is not None:  # (the layout cache)
                    sealed(encryptor.parsed_header, Trailer(encryptor.md5, *(found or ())))
            except S3ProxyError as err:
                failure.append(err)
                raise
            # Only a fully received and verified body gets its final segment: without it the
            # upstream never sees a complete request, so nothing is stored.
            yield b"".join((frame(last), framer.finish() if framer is not None else b""))

        try:
            # The pieces are bytes-like (aiohttp writes any); the client's signature says bytes.
            stream = cast(AsyncIterator[bytes], body())
            resp = await self.upstream.send("PUT", target, headers, stream, sent, payload)
        except Exception:
            if failure:
                raise failure[0] from None
            raise
        if failure:
            resp.release()
            raise failure[0]
        return resp, single_etag(encryptor.md5 or b"")

    async def _put_small(
        self,
        target: Target,
        headers: Headers,
        plaintext: AsyncIterator[bytes],
        checksum: Callable[[], Checksum],
        encryptor: StreamEncryptor,
        sealed: Callable[[Header, Trailer], None] | None,
    ) -> tuple[aiohttp.ClientResponse, str]:
        """A small stream is sealed whole, then sent in one request: signed with its SHA-256
        and, as the upstream checksum, an ``x-amz-checksum-*`` header instead of a trailer (one
        write instead of a framed stream's several; docs/performance.md)."""
        pieces: list[bytes | bytearray] = [encryptor.header]
        async for plain in plaintext:
            pieces.append(encryptor.feed(plain))
        found = checksum()
        pieces.append(encryptor.finish(*found) if found is not None else encryptor.finish())
        if sealed is not None and encryptor.md5 is not None:  # (the layout cache)
            sealed(encryptor.parsed_header, Trailer(encryptor.md5, *(found or ())))
        body = b"".join(pieces)
        algorithm = self.config.upstream_checksum
        if algorithm is not None:
            hasher = new_hasher(algorithm)
            hasher.update(body)
            value = base64.b64encode(hasher.digest()).decode()
            headers = [*headers, (f"x-amz-checksum-{algorithm}", value)]
        resp = await self.upstream.send("PUT", target, headers, body)
        return resp, single_etag(encryptor.md5 or b"")

    async def if_match_for_upstream(self, target: Target, headers: Headers) -> None:
        """A conditional write's ``If-Match`` names the plaintext ETag the client saw: check it
        here and make the upstream write conditional on the stored ETag of that same object."""
        value = get_header(headers, "If-Match")
        if value is None:
            return
        current = await self.objects.current(target)
        if current is None:
            return  # the upstream answers for a missing object, as S3 would
        headers[:] = [(k, v) for k, v in headers if k.lower() != "if-match"]
        if not etag_matches(value, current.etag):
            raise PreconditionFailed()
        headers.append(("If-Match", current.stored_etag))

    async def encrypt_upload(self, request: web.Request, target: Target) -> web.StreamResponse:
        """PutObject or UploadPart: the body becomes one stream (docs/design.md, Writing)."""
        chunked = is_aws_chunked(request.headers)
        length = _plaintext_length(request, chunked)
        verifier = verifier_for(request.headers.items())
        decoder = AwsChunkedDecoder(length, chunk_signatures(request)) if chunked else None
        headers = upstream_request_headers(request.headers.items(), encrypting=True)
        if not target.has("uploadId"):
            marker = marker_value(self.config.segment_size, version=WRITE_VERSION)
            headers.append((MARKER_HEADER, marker))
            await self.if_match_for_upstream(target, headers)
        plaintext = _client_plaintext(request, decoder, verifier)
        stream: list[tuple[Header, Trailer]] = []
        resp, etag = await self.put_stream(
            target,
            headers,
            length,
            plaintext,
            verifier.declared_checksum,
            whole_object=not target.has("uploadId"),
            sealed=lambda header, trailer: stream.append((header, trailer)),
        )
        async with resp:
            body = await resp.read()
            if resp.status != 200:
                return relay_body(resp, body)
            stored_etag = resp.headers.get("ETag")
            if stream and stored_etag:
                self._remember_stream(target, resp, stored_etag, *stream[0])
            checksums = [
                (name, value)
                for name, value in verifier.computed().items()
                if name.startswith("x-amz-checksum-")
            ]
            return relay_body(resp, body, [("ETag", etag), *checksums])

    def _remember_stream(
        self,
        target: Target,
        resp: aiohttp.ClientResponse,
        stored_etag: str,
        header: Header,
        trailer: Trailer,
    ) -> None:
        """The layout of the stream just stored, as a read would find it: a PutObject's in the
        object cache (under the stored ETag the upstream answered, and its version if any), an
        UploadPart's for the upload's completion (docs/design.md, Reading without a probe)."""
        if target.has("uploadId"):
            self.objects.remember_part(target, stored_etag, header, trailer)
            return
        layout = Layout.from_headers([header])
        marker = Marker(header.segment_size, False, version=header.version)
        info = ObjectInfo(
            layout,
            (trailer,),
            object_etag([trailer.md5], False),
            object_checksum(layout, (trailer,), marker),
        )
        self.objects.remember(target.without("versionId"), stored_etag, info)
        version = resp.headers.get("x-amz-version-id")
        if version and version != "null":
            versioned = Target(target.bucket, target.key, (("versionId", version),))
            self.objects.remember(versioned, stored_etag, info)

    async def create_multipart(self, request: web.Request, target: Target) -> web.StreamResponse:
        """The marker records the checksum algorithm and type the client chose, for the
        object's checksum at Complete; the upstream is not told them (it would then demand
        checksums of the ciphertext parts in a form the proxy does not send)."""
        headers = upstream_request_headers(request.headers.items(), encrypting=True)
        checksum = _requested_checksum(request.headers)
        marker = marker_value(
            self.config.segment_size, version=WRITE_VERSION, multipart=True, checksum=checksum
        )
        headers.append((MARKER_HEADER, marker))
        await discard_body(request)
        upstream_resp = await self.upstream.send("POST", target, headers, b"")
        async with upstream_resp:
            body = await upstream_resp.read()
            extra: Headers = []
            if checksum is not None and upstream_resp.status == 200:
                extra = [
                    ("x-amz-checksum-algorithm", checksum[0].upper()),
                    ("x-amz-checksum-type", checksum[1]),
                ]
            return relay_body(upstream_resp, body, extra)

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
        await self.if_match_for_upstream(target.without("uploadId"), headers)
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
