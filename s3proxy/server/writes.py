"""Handlers that write objects: PutObject and UploadPart (encrypt while streaming, answer the
plaintext's MD5 as ETag) and CreateMultipartUpload. CompleteMultipartUpload is
server/completion.py."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass

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
from s3proxy.core.footer import MetadataKey, footer_sealer
from s3proxy.core.format import (
    PART_VERSION,
    VERSION_3,
    WHOLE_OBJECT_VERSION,
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
from s3proxy.core.sizes import FOOTER_SIZE, READ_CHUNK, ciphertext_length
from s3proxy.keys.transit import KeyService, wrapped_version
from s3proxy.server.bodies import body_chunks
from s3proxy.server.clientauth import BodyHash, chunk_signatures, discard_body
from s3proxy.server.digests import OVERLAP_MIN, OverlappedMd5, overlap_possible
from s3proxy.server.relay import relay_body
from s3proxy.store.caches import InfoSource
from s3proxy.store.objects import ObjectInspector
from s3proxy.store.sharedfacts import identity
from s3proxy.upstream.client import Upstream
from s3proxy.upstream.forms import Chunk
from s3proxy.upstream.response import Response
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


@dataclass(frozen=True)
class Written:
    """A stream the proxy sent upstream: the upstream's response (for the caller to release),
    the plaintext's ETag, and the stream's header and trailer if it was sealed."""

    response: Response
    etag: str
    sealed: tuple[Header, Trailer, bytes | None] | None  # header, trailer, v3 footer


class Sealing:
    """One stream encrypted from its plaintext while the upstream request reads it. Only a
    plaintext that ended without error gets the final segment: without it the upstream never
    sees a complete request, so nothing is stored.

    It owns the outcome of the writing: the plaintext's error (the upstream client reports only
    that sending failed) is raised by :meth:`upload`, where the response is awaited; what was
    written is told by :meth:`written`."""

    def __init__(
        self,
        encryptor: StreamEncryptor,
        plaintext: AsyncIterator[bytes],
        checksum: Callable[[], Checksum],
        md5: OverlappedMd5 | None = None,
    ) -> None:
        self._encryptor = encryptor
        self._plaintext = plaintext
        self._checksum = checksum
        self._md5 = md5  # the encryptor's, when it hashes on the MD5 thread
        self._failure: S3ProxyError | None = None
        self._sealed: tuple[Header, Trailer, bytes | None] | None = None

    @property
    def version(self) -> int:
        return self._encryptor.parsed_header.version

    def _finish(self) -> bytes:
        """The final segment, once the plaintext ended; the trailer records ``checksum()``."""
        encryptor = self._encryptor
        found = self._checksum()
        last = encryptor.finish(*found) if found is not None else encryptor.finish()
        if encryptor.md5 is not None:  # (for the layout cache)
            header = encryptor.parsed_header
            footer = last[-FOOTER_SIZE:] if header.has_footer else None
            self._sealed = (header, Trailer(encryptor.md5, *(found or ())), footer)
        return last

    async def whole(self) -> bytes:
        """The whole stream (a small one, sent in one piece)."""
        encryptor = self._encryptor
        pieces: list[bytes | bytearray] = [encryptor.header]
        async for plain in self._plaintext:
            pieces.append(encryptor.feed(plain))
        pieces.append(self._finish())
        return b"".join(pieces)

    async def _chunks(self) -> AsyncIterator[Chunk]:
        encryptor, md5 = self._encryptor, self._md5
        try:
            yield encryptor.header
            async for plain in self._plaintext:
                out = encryptor.feed(plain)
                if md5 is not None:
                    await md5.keep_up()
                if out:
                    yield out
            if md5 is not None:
                await md5.caught_up()
            last = self._finish()
        except S3ProxyError as err:
            self._failure = err
            raise
        yield last

    async def upload(
        self, uploads: Uploads, target: Target, headers: Iterable[tuple[str, str]], stored: int
    ) -> Response:
        """The stream PUT as it is produced (``stored`` bytes); the plaintext's error, if it
        failed, rather than the upstream's answer to a request cut short."""
        try:
            resp = await uploads.put_stream(target, headers, stored, self._chunks())
        except Exception:
            if self._failure is not None:
                raise self._failure from None
            raise
        if self._failure is not None:
            resp.release()
            raise self._failure
        return resp

    def written(self, response: Response) -> Written:
        return Written(response, single_etag(self._encryptor.md5 or b""), self._sealed)


def stream_info(header: Header, trailer: Trailer, footer: bytes | None) -> ObjectInfo:
    """The info of a whole object of one stream that this process sealed (``footer``: v3)."""
    layout = Layout.from_headers([header]).with_footers({0: footer} if footer else {})
    marker = Marker(header.segment_size, False, version=header.version)
    return ObjectInfo(
        layout,
        (trailer,),
        object_etag([trailer.md5], False),
        object_checksum(layout, (trailer,), marker),
    )


class Writer:
    def __init__(
        self, config: Config, keys: KeyService, upstream: Upstream, objects: ObjectInspector
    ) -> None:
        self.config = config
        self.keys = keys
        self.upstream = upstream
        self.objects = objects
        self.uploads = Uploads(upstream, config.upstream.checksum)

    async def put_stream(
        self,
        target: Target,
        headers: Iterable[tuple[str, str]],
        length: int,
        plaintext: AsyncIterator[bytes],
        checksum: Callable[[], Checksum] = lambda: None,
        *,
        whole_object: bool,
    ) -> Written:
        """PUT ``length`` bytes of plaintext upstream as one stream (a whole object, or a part;
        parts carry the manifest flag when the proxy records manifests), complete only once
        ``plaintext`` ended without error (:class:`Sealing`); the stream's trailer records
        ``checksum()``. The caller releases the upstream response."""
        md5 = OverlappedMd5() if length >= OVERLAP_MIN and overlap_possible() else None
        encryptor = await self._encryptor(target, length, whole_object, md5)
        sealing = Sealing(encryptor, plaintext, checksum, md5)
        if length <= SINGLE_SEND_LIMIT:
            # Sealed whole, then sent in one request: signed with its SHA-256 and, as the
            # upstream checksum, an x-amz-checksum-* header instead of a trailer (one write
            # instead of a framed stream's several; docs/performance-history.md, Changes and
            # what they bought).
            resp = await self.uploads.put_whole(target, headers, await sealing.whole())
        else:
            version = sealing.version
            stored = ciphertext_length(length, self.config.segment_size, version)
            resp = await sealing.upload(self.uploads, target, headers, stored)
        return sealing.written(resp)

    async def _encryptor(
        self, target: Target, length: int, whole_object: bool, md5: OverlappedMd5 | None = None
    ) -> StreamEncryptor:
        """The encryptor of a new stream of ``length`` bytes, under a new data key: a whole
        object's or a part's, in v3 (its footer sealed under the latest metadata key)."""
        data_key = await self.keys.new_data_key(length)
        version = WHOLE_OBJECT_VERSION if whole_object else PART_VERSION
        end = None
        if version == VERSION_3:
            end = footer_sealer(await self._metadata_key(data_key.wrapped))
        return StreamEncryptor(
            data_key.plaintext,
            data_key.wrapped,
            length,
            self.config.segment_size,
            version=version,
            end=end,
            whole_object=whole_object,
            manifest_part=not whole_object and self.config.multipart_manifest,
            binding=(
                name_binding(target.bucket or "", target.key or "")
                if self.config.bind_names
                else None
            ),
            md5=md5,
        )

    async def _metadata_key(self, wrapped: str) -> MetadataKey:
        """The latest metadata key, of a version no older than the data key's wrapping: so a
        stream whose wrapped key is current has a current footer too, and ``s3proxy rewrap``
        can tell from the header alone (docs/keys.md)."""
        found = await self.keys.metadata_key()
        version = wrapped_version(wrapped)
        return found if found.version >= version else await self.keys.metadata_key(version)

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
            marker = marker_value(self.config.segment_size, version=WHOLE_OBJECT_VERSION)
            headers = await self.if_match_for_upstream(
                target, headers.plus([(MARKER_HEADER, marker)])
            )
        plaintext = _client_plaintext(request, decoder, verifier)
        written = await self.put_stream(
            target,
            headers,
            length,
            plaintext,
            verifier.declared_checksum,
            whole_object=not target.has("uploadId"),
        )
        resp = written.response
        async with resp:
            body = await resp.read()
            if resp.status != 200:
                return relay_body(resp, body)
            await self.keep_written(target, written)
            checksums = [
                (name, value)
                for name, value in verifier.computed().items()
                if name.startswith("x-amz-checksum-")
            ]
            return relay_body(resp, body, [("ETag", written.etag), *checksums])

    async def keep_written(self, target: Target, written: Written) -> None:
        """What a successful write of a stream (PutObject, UploadPart, a re-encrypting copy)
        leaves known: in this process's caches (a part's for the upload's completion, a whole
        object's layout, built when first read), and for a whole object in the shared cache,
        written through for the proxies of the transit key (docs/metadata.md)."""
        resp = written.response
        stored_etag = resp.headers.get("ETag")
        if resp.status != 200 or written.sealed is None or not stored_etag:
            return
        if target.has("uploadId"):
            self.objects.remember_part(target, stored_etag, *written.sealed)
            return
        shared = self.objects.shared
        build = functools.cache(functools.partial(stream_info, *written.sealed))
        if not shared.enabled:
            self._remember_object(target, resp, stored_etag, build)
            return
        info = build()
        self._remember_object(target, resp, stored_etag, info)
        stored = identity(target, stored_etag, info.layout.stored_length)
        await shared.publish(stored, info.summary)

    def _remember_object(
        self, target: Target, resp: Response, stored_etag: str, info: InfoSource
    ) -> None:
        """The layout of the object just stored, as a read would find it, in the object cache
        under the stored ETag the upstream answered (and its version, if any): docs/design.md,
        Reading without a probe."""
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
            self.config.segment_size, version=PART_VERSION, multipart=True, checksum=checksum
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
