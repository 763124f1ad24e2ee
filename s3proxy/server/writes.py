"""Handlers that write objects: PutObject and UploadPart (encrypt while streaming),
CreateMultipartUpload and CompleteMultipartUpload (keep the upstream from expecting plaintext
checksums), CopyObject and UploadPartCopy (keep copies decryptable)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from urllib.parse import unquote

import aiohttp
from aiohttp import web

from s3proxy.config import Config
from s3proxy.core.awschunked import STREAMING_PAYLOADS, AwsChunkedDecoder
from s3proxy.core.checksums import CHECKSUM_ALGORITHMS, verifier_for
from s3proxy.core.errors import (
    IncompleteBody,
    InvalidArgument,
    MissingContentLength,
    NotImplementedByProxy,
    S3ProxyError,
)
from s3proxy.core.format import StreamEncryptor
from s3proxy.core.headers import (
    CHECKSUM_METADATA,
    MARKER_HEADER,
    marker_value,
    upstream_request_headers,
)
from s3proxy.core.request import Target, parse_target
from s3proxy.core.s3xml import strip_part_checksums
from s3proxy.core.sizes import ciphertext_length
from s3proxy.keys.transit import KeyService
from s3proxy.server.relay import READ_CHUNK, Marker, relay, relay_body
from s3proxy.upstream.client import Upstream

COMPLETE_BODY_LIMIT = 8 * 1024 * 1024


def is_aws_chunked(headers: Mapping[str, str]) -> bool:
    """Whether the body is aws-chunked framing; unknown streaming variants are refused."""
    sha = headers.get("x-amz-content-sha256", "").upper()
    encoding = headers.get("Content-Encoding", "").lower()
    if sha.startswith("STREAMING-") and sha not in STREAMING_PAYLOADS:
        raise NotImplementedByProxy(f"s3proxy does not support the payload type {sha}.")
    return sha in STREAMING_PAYLOADS or "aws-chunked" in encoding


def _declared_checksum(headers: Mapping[str, str]) -> str | None:
    """The first full-object checksum the client sent as a header, as "<algorithm>:<value>"
    (verified against the plaintext before the upload completes)."""
    for algorithm in CHECKSUM_ALGORITHMS:
        value = headers.get(f"x-amz-checksum-{algorithm}")
        if value:
            return f"{algorithm}:{value.strip()}"
    return None


def _plaintext_length(request: web.Request, chunked: bool) -> int:
    if chunked:
        decoded = request.headers.get("x-amz-decoded-content-length")
        if decoded is None or not decoded.isdigit():
            raise MissingContentLength(
                "You must provide the x-amz-decoded-content-length header with aws-chunked bodies."
            )
        return int(decoded)
    if request.content_length is None:
        raise MissingContentLength("You must provide the Content-Length HTTP header.")
    return request.content_length


class Writer:
    def __init__(self, config: Config, keys: KeyService, upstream: Upstream) -> None:
        self.config = config
        self.keys = keys
        self.upstream = upstream

    async def encrypt_upload(self, request: web.Request, target: Target) -> web.StreamResponse:
        """PutObject or UploadPart: the body becomes one stream (docs/design.md, Writing)."""
        chunked = is_aws_chunked(request.headers)
        length = _plaintext_length(request, chunked)
        verifier = verifier_for(request.headers.items())
        decoder = AwsChunkedDecoder(length) if chunked else None
        seg = self.config.segment_size
        data_key = await self.keys.new_data_key(length)
        encryptor = StreamEncryptor(data_key.plaintext, data_key.wrapped, length, seg)
        headers = upstream_request_headers(request.headers.items(), encrypting=True)
        if not target.has("uploadId"):
            headers.append((MARKER_HEADER, marker_value(seg)))
            checksum = _declared_checksum(request.headers)
            if checksum is not None:
                headers.append((CHECKSUM_METADATA, checksum))
        failure: list[S3ProxyError] = []

        async def body() -> AsyncIterator[bytes]:
            try:
                yield encryptor.header
                async for chunk in request.content.iter_chunked(READ_CHUNK):
                    plain = decoder.feed(chunk) if decoder is not None else chunk
                    verifier.update(plain)
                    out = encryptor.feed(plain)
                    if out:
                        yield out
                if decoder is not None:
                    decoder.finish()
                    verifier.trailers_arrived(decoder.trailers)
                last = encryptor.finish()
                verifier.verify()
            except S3ProxyError as err:
                failure.append(err)
                raise
            except (aiohttp.ClientPayloadError, ConnectionError) as exc:
                failure.append(IncompleteBody("The request body was cut off."))
                raise failure[-1] from exc
            # Only a fully received and verified body gets its final segment: without it the
            # upstream never sees a complete request, so nothing is stored.
            yield last

        try:
            upstream_resp = await self.upstream.send(
                "PUT", target, headers, body(), ciphertext_length(length, seg)
            )
        except Exception:
            if failure:
                raise failure[0] from None
            raise
        async with upstream_resp:
            if failure:
                raise failure[0]
            checksums = [
                (name, value)
                for name, value in verifier.computed().items()
                if name.startswith("x-amz-checksum-")
            ]
            body_bytes = await upstream_resp.read()
            return relay_body(
                upstream_resp, body_bytes, checksums if upstream_resp.status == 200 else None
            )

    async def create_multipart(self, request: web.Request, target: Target) -> web.StreamResponse:
        # Checksum algorithm and type headers go too: the upstream would then demand checksums
        # of the ciphertext parts, which the proxy does not send.
        headers = upstream_request_headers(request.headers.items(), encrypting=True)
        headers.append((MARKER_HEADER, marker_value(self.config.segment_size, multipart=True)))
        await request.read()
        upstream_resp = await self.upstream.send("POST", target, headers, b"")
        async with upstream_resp:
            return relay_body(upstream_resp, await upstream_resp.read())

    async def complete_multipart(self, request: web.Request, target: Target) -> web.StreamResponse:
        length = request.content_length
        if length is None:
            raise MissingContentLength("You must provide the Content-Length HTTP header.")
        if length > COMPLETE_BODY_LIMIT:
            raise InvalidArgument("The CompleteMultipartUpload body is too large.")
        body = strip_part_checksums(await request.read())
        headers = [
            (k, v)
            for k, v in upstream_request_headers(request.headers.items(), encrypting=True)
            if k.lower()
            != "x-amz-mp-object-size"  # the plaintext size; the upstream sums ciphertext
        ]
        upstream_resp = await self.upstream.send("POST", target, headers, body)
        async with upstream_resp:
            return await relay(request, upstream_resp)

    async def _source_marker(self, request: web.Request) -> Marker | None:
        """The encryption marker of an ``x-amz-copy-source``, from a HEAD of that object."""
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
        src = Target(src.bucket, src.key, (("versionId", version),) if version else ())
        head = await self.upstream.send("HEAD", src, [])
        async with head:
            if head.status != 200:
                return None  # the copy itself will report the problem, as S3 would
            return Marker.of(head)

    async def copy_object(self, request: web.Request, target: Target) -> web.StreamResponse:
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        directive = request.headers.get("x-amz-metadata-directive", "COPY").upper()
        if directive == "REPLACE":
            # The client's new metadata replaces all of it; the proxy's marker must survive.
            headers = upstream_request_headers(request.headers.items(), encrypting=True)
            marker = await self._source_marker(request)
            if marker is not None:
                value = marker_value(marker.segment_size, multipart=marker.multipart)
                headers.append((MARKER_HEADER, value))
                if marker.checksum is not None:
                    headers.append((CHECKSUM_METADATA, marker.checksum))
        await request.read()
        upstream_resp = await self.upstream.send("PUT", target, headers, b"")
        async with upstream_resp:
            return relay_body(upstream_resp, await upstream_resp.read())

    async def upload_part_copy(self, request: web.Request, target: Target) -> web.StreamResponse:
        if await self._source_marker(request) is None:
            raise NotImplementedByProxy(
                "s3proxy does not support this request: UploadPartCopy from an object that is "
                "not encrypted by s3proxy would mix plaintext into an encrypted object"
            )
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        await request.read()
        upstream_resp = await self.upstream.send("PUT", target, headers, b"")
        async with upstream_resp:
            return await relay(request, upstream_resp)
