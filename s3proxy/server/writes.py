"""Handlers that write objects: PutObject and UploadPart (encrypt while streaming, answer the
plaintext's MD5 as ETag) and CreateMultipartUpload. CompleteMultipartUpload is
server/completion.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

import aiohttp
from aiohttp import web

from s3proxy.config import Config
from s3proxy.core.awschunked import STREAMING_PAYLOADS, AwsChunkedDecoder
from s3proxy.core.checksums import CHECKSUM_ALGORITHMS, BodyVerifier, verifier_for
from s3proxy.core.conditions import etag_matches
from s3proxy.core.errors import (
    EntityTooLarge,
    InvalidRequest,
    MissingContentLength,
    NotImplementedByProxy,
    PreconditionFailed,
    S3ProxyError,
)
from s3proxy.core.etags import object_etag, single_etag
from s3proxy.core.format import (
    WRITE_VERSION,
    Header,
    StreamEncryptor,
    Trailer,
    name_binding,
)
from s3proxy.core.headers import (
    MARKER_HEADER,
    HeaderPairs,
    Headers,
    marker_value,
    upstream_request_headers,
)
from s3proxy.core.layout import Layout
from s3proxy.core.marker import Marker
from s3proxy.core.numbers import parse_decimal
from s3proxy.core.objectinfo import ObjectInfo, object_checksum
from s3proxy.core.objectsums import default_type, valid_type
from s3proxy.core.request import Target
from s3proxy.core.sizes import READ_CHUNK, ciphertext_length
from s3proxy.keys.transit import KeyService
from s3proxy.server.bodies import body_chunks
from s3proxy.server.clientauth import BodyHash, chunk_signatures, discard_body
from s3proxy.server.relay import relay_body
from s3proxy.store.objects import ObjectInspector
from s3proxy.upstream.client import Upstream
from s3proxy.upstream.forms import Chunk
from s3proxy.upstream.uploads import Uploads

log = logging.getLogger("s3proxy")

SINGLE_SEND_LIMIT = 64 * 1024  # plaintext bytes sealed whole and sent in one write

Checksum = tuple[str, bytes] | None


def is_aws_chunked(headers: Mapping[str, str]) -> bool:
    """Whether the body is aws-chunked framing; unknown streaming variants are refused."""
    sha = headers.get("x-amz-content-sha256", "").upper()
    encoding = headers.get("Content-Encoding", "").lower()
    if sha.startswith("STREAMING-") and sha not in STREAMING_PAYLOADS:
        raise NotImplementedByProxy(f"s3proxy does not support the payload type {sha}.")
    return sha in STREAMING_PAYLOADS or "aws-chunked" in encoding


# S3's largest PutObject or UploadPart body (5 GiB): a larger one is EntityTooLarge.
MAX_UPLOAD = 5 * 1024**3


def _plaintext_length(request: web.Request, chunked: bool) -> int:
    if chunked:
        decoded = parse_decimal(request.headers.get("x-amz-decoded-content-length"))
        if decoded is None:
            raise MissingContentLength(
                "You must provide the x-amz-decoded-content-length header with aws-chunked bodies."
            )
        length = decoded
    elif request.content_length is None:
        raise MissingContentLength("You must provide the Content-Length HTTP header.")
    else:
        length = request.content_length
    if length > MAX_UPLOAD:
        raise EntityTooLarge("Your proposed upload exceeds the maximum allowed size.")
    return length


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


def _quoted_like(condition: str, stored_etag: str) -> str:
    """The stored ETag, quoted as the client quoted its condition: some stores (Ceph RGW)
    compare the header with the ETag as text, so a client that sends it bare gets it bare."""
    bare = stored_etag.strip().strip('"')
    return f'"{bare}"' if condition.strip().startswith(('"', 'W/"')) else bare  # (and for *)


class Writer:
    def __init__(
        self, config: Config, keys: KeyService, upstream: Upstream, objects: ObjectInspector
    ) -> None:
        self.config = config
        self.keys = keys
        self.upstream = upstream
        self.objects = objects
        self.uploads = Uploads(upstream, config.upstream_checksum)

    async def put_stream(
        self,
        target: Target,
        headers: Iterable[tuple[str, str]],
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

        async def body() -> AsyncIterator[Chunk]:
            try:
                yield encryptor.header
                async for plain in plaintext:
                    out = encryptor.feed(plain)
                    if out:
                        yield out
                found = checksum()
                last = encryptor.finish(*found) if found is not None else encryptor.finish()
                if sealed is not None and encryptor.md5 is not None:  # (the layout cache)
                    sealed(encryptor.parsed_header, Trailer(encryptor.md5, *(found or ())))
            except S3ProxyError as err:
                failure.append(err)
                raise
            # Only a fully received and verified body gets its final segment: without it the
            # upstream never sees a complete request, so nothing is stored.
            yield last

        stored = ciphertext_length(length, seg, WRITE_VERSION)
        try:
            resp = await self.uploads.put_stream(target, headers, stored, body())
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
        headers: Iterable[tuple[str, str]],
        plaintext: AsyncIterator[bytes],
        checksum: Callable[[], Checksum],
        encryptor: StreamEncryptor,
        sealed: Callable[[Header, Trailer], None] | None,
    ) -> tuple[aiohttp.ClientResponse, str]:
        """A small stream is sealed whole, then sent in one request: signed with its SHA-256
        and, as the upstream checksum, an ``x-amz-checksum-*`` header instead of a trailer (one
        write instead of a framed stream's several; docs/performance-history.md, Changes and
        what they bought)."""
        pieces: list[bytes | bytearray] = [encryptor.header]
        async for plain in plaintext:
            pieces.append(encryptor.feed(plain))
        found = checksum()
        pieces.append(encryptor.finish(*found) if found is not None else encryptor.finish())
        if sealed is not None and encryptor.md5 is not None:  # (the layout cache)
            sealed(encryptor.parsed_header, Trailer(encryptor.md5, *(found or ())))
        resp = await self.uploads.put_whole(target, headers, b"".join(pieces))
        return resp, single_etag(encryptor.md5 or b"")

    async def if_match_for_upstream(self, target: Target, headers: Headers) -> Headers:
        """The headers of a conditional write for the upstream. Its ``If-Match`` /
        ``If-None-Match`` name plaintext ETags the client saw: they are checked here against the
        object's, and the upstream write is made conditional on the stored ETag of that same
        object (``If-Match: *`` too: moto compares it as an ETag). ``If-None-Match: *`` goes
        upstream as it is."""
        if_match = headers.get("If-Match")
        if_none_match = headers.get("If-None-Match")
        if if_match is None and (if_none_match is None or if_none_match.strip() == "*"):
            return headers
        current = await self.objects.current(target)
        if current is None:
            return headers  # the upstream answers for a missing object, as S3 would
        if if_none_match is not None and etag_matches(if_none_match, current.etag):
            raise PreconditionFailed()
        if if_match is None:
            return headers
        if not etag_matches(if_match, current.etag):
            raise PreconditionFailed()
        return headers.replace("If-Match", _quoted_like(if_match, current.stored_etag))

    async def encrypt_upload(self, request: web.Request, target: Target) -> web.StreamResponse:
        """PutObject or UploadPart: the body becomes one stream (docs/design.md, Writing)."""
        chunked = is_aws_chunked(request.headers)
        length = _plaintext_length(request, chunked)
        verifier = verifier_for(request.headers.items())
        decoder = AwsChunkedDecoder(length, chunk_signatures(request)) if chunked else None
        headers = Headers(upstream_request_headers(request.headers.items(), encrypting=True))
        if not target.has("uploadId"):
            marker = marker_value(self.config.segment_size, version=WRITE_VERSION)
            headers = await self.if_match_for_upstream(
                target, headers.plus([(MARKER_HEADER, marker)])
            )
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
        checksum = _requested_checksum(request.headers)
        marker = marker_value(
            self.config.segment_size, version=WRITE_VERSION, multipart=True, checksum=checksum
        )
        headers = Headers(upstream_request_headers(request.headers.items(), encrypting=True))
        headers = headers.plus([(MARKER_HEADER, marker)])
        await discard_body(request)
        upstream_resp = await self.upstream.send("POST", target, headers, b"")
        async with upstream_resp:
            body = await upstream_resp.read()
            extra: HeaderPairs = []
            if checksum is not None and upstream_resp.status == 200:
                extra = [
                    ("x-amz-checksum-algorithm", checksum[0].upper()),
                    ("x-amz-checksum-type", checksum[1]),
                ]
            return relay_body(upstream_resp, body, extra)
