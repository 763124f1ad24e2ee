"""CompleteMultipartUpload: the client's part list checked against the upload's parts (the
plaintext ETags it names mapped to the stored parts'), the upstream's completion checked against
that list (store/assembly.py), and the plaintext ETag of the result (docs/format.md, Multipart
manifest)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from s3proxy.config import Config
from s3proxy.core.errors import (
    IntegrityError,
    InvalidArgument,
    MissingContentLength,
    NoSuchUpload,
    xml_text,
)
from s3proxy.core.etags import md5_of_etag
from s3proxy.core.headers import Headers, upstream_request_headers
from s3proxy.core.objectinfo import ObjectInfo
from s3proxy.core.partlist import ExpectedPart, ListedPart, effective, expected_parts
from s3proxy.core.request import Target
from s3proxy.core.s3xml import (
    S3_NS,
    CompletionParser,
    completion_body,
    listed_parts,
    replace_text,
    set_checksum,
)
from s3proxy.server.bodies import body_chunks
from s3proxy.server.clientauth import BodyHash
from s3proxy.server.relay import relay_body
from s3proxy.server.writes import Writer
from s3proxy.store.assembly import AssemblyCheck
from s3proxy.store.objects import ObjectInspector
from s3proxy.upstream.client import Upstream
from s3proxy.upstream.response import Response

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
    async for piece in body_chunks(request, COMPLETE_PIECE, held=True):
        received += len(piece)
        if received > COMPLETE_BODY_LIMIT:
            raise InvalidArgument("The CompleteMultipartUpload body is too large.")
        signed.update(piece)
        parser.feed(piece)
        await asyncio.sleep(0)  # a client that sends fast still shares the loop
    signed.verify()
    return parser.close()


def _result_target(upload: Target, resp: Response) -> Target:
    """The completed object (its version, if the upstream made one)."""
    result = upload.without("uploadId")
    version = resp.headers.get("x-amz-version-id")
    if version and version != "null":
        result = Target(result.bucket, result.key, (("versionId", version),))
    return result


def _with_info(data: bytes, info: ObjectInfo) -> bytes:
    """The completion result with the plaintext ETag and checksum."""
    if info.etag is not None:
        data = replace_text(data, "ETag", info.etag)
    if info.checksum is not None:
        checksum = info.checksum
        data = set_checksum(data, checksum.algorithm, checksum.value, checksum.type)
    return data


def _result_document(request: web.Request, target: Target, etag: str) -> bytes:
    location = f"{request.scheme}://{request.host}{request.raw_path.split('?', 1)[0]}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<CompleteMultipartUploadResult xmlns="{S3_NS}">'
        f"<Location>{xml_text(location)}</Location><Bucket>{xml_text(target.bucket or '')}"
        f"</Bucket><Key>{xml_text(target.key or '')}</Key><ETag>{xml_text(etag)}</ETag>"
        "</CompleteMultipartUploadResult>"
    ).encode()


Listing = dict[int, ListedPart] | tuple[Response, bytes]


class Completer:
    def __init__(
        self, config: Config, upstream: Upstream, objects: ObjectInspector, writer: Writer
    ) -> None:
        self.config = config
        self.upstream = upstream
        self.objects = objects
        self.writer = writer  # (conditional writes: If-Match on the completed object)
        self.assembly = AssemblyCheck(objects)
        # The proxy's budget, shared out among its workers: with two, four parses at once
        # would take both cores from the requests the bound protects (tests/test_hostile.py).
        self._completions = asyncio.Semaphore(max(1, COMPLETIONS_AT_ONCE // config.ops.workers))

    async def _listed_parts(self, target: Target) -> Listing:
        """Every part uploaded so far (ListParts, all pages), or the refusal to list them (the
        response, released, and its body)."""
        upload = target.param("uploadId") or ""
        found: dict[int, ListedPart] = {}
        marker = ""
        for _ in range(MAX_PARTS // 1000 + 1):
            query: list[tuple[str, str | None]] = [("uploadId", upload), ("max-parts", "1000")]
            if marker:
                query.append(("part-number-marker", marker))
            page_target = Target(target.bucket, target.key, tuple(query))
            resp = await self.upstream.send("GET", page_target, [])
            async with resp:
                body = await resp.read()
                if resp.status != 200:
                    return resp, body
            page = listed_parts(body)
            found.update({n: ListedPart(n, etag, size) for n, etag, size in page.parts})
            if page.next_marker is None:
                break
            marker = page.next_marker
        return found

    async def complete_multipart(self, request: web.Request, target: Target) -> web.StreamResponse:
        """The client lists each part with the plaintext ETag it was given; the upstream is sent
        the stored part's, and the object it completes must be exactly those parts."""
        length = request.content_length
        if length is None:
            raise MissingContentLength("You must provide the Content-Length HTTP header.")
        if length > COMPLETE_BODY_LIMIT:
            raise InvalidArgument("The CompleteMultipartUpload body is too large.")
        listing = await self._listed_parts(target)
        async with self._completions:  # few parses share the loop at once, however many wait
            claimed = await _completion_parts(request)
        forwarded = Headers(upstream_request_headers(request.headers.items(), encrypting=True))
        # x-amz-mp-object-size is the plaintext's size; the upstream sums ciphertext
        headers = forwarded.without("x-amz-mp-object-size")
        if isinstance(listing, tuple):  # no such upload (perhaps completed already), or denied
            repeated = await self._repeated(request, target, claimed, listing[0].status)
            if repeated is not None:
                return repeated
            return await self._unlisted(target, headers, claimed)
        parts = expected_parts(claimed, listing, lambda n: self.objects.own_part(target, n))
        headers = await self.writer.if_match_for_upstream(target.without("uploadId"), headers)
        body = completion_body([(p.number, p.stored_etag) for p in parts])
        upstream_resp = await self.upstream.send("POST", target, headers, body)
        async with upstream_resp:
            data = await upstream_resp.read()
            if upstream_resp.status != 200 or b"CompleteMultipartUploadResult" not in data:
                return relay_body(upstream_resp, data)
            info = await self._verified(target, _result_target(target, upstream_resp), parts)
            return relay_body(upstream_resp, _with_info(data, info))

    async def _unlisted(
        self, target: Target, headers: Headers, claimed: list[tuple[int, str]]
    ) -> web.StreamResponse:
        """An upload whose parts do not list: the upstream is asked to complete the client's
        list as it is, for its own refusal (NoSuchUpload, AccessDenied, ...). Should it answer
        success (an upstream that repeats any completion, as moto does), the list was never
        checked: the answer is NoSuchUpload, as ListParts said, and no manifest is written."""
        resp = await self.upstream.send("POST", target, headers, completion_body(claimed))
        async with resp:
            data = await resp.read()
            if resp.status == 200 and b"CompleteMultipartUploadResult" in data:
                log.warning(
                    "%s: the upstream answered a Complete of an upload it does not list with "
                    "success; the parts named are not proven, so the answer is NoSuchUpload",
                    target.resource,
                )
                raise NoSuchUpload()
            return relay_body(resp, data)

    async def _verified(
        self, upload: Target, result: Target, parts: list[ExpectedPart]
    ) -> ObjectInfo:
        try:
            return await self.assembly.verify(result, parts)
        finally:  # the upload is gone upstream: its parts are of no further use
            self.objects.forget_parts(upload, [p.number for p in parts])

    async def _repeated(
        self, request: web.Request, upload: Target, claimed: list[tuple[int, str]], status: int
    ) -> web.StreamResponse | None:
        """A Complete repeated after it succeeded (a client retrying, as S3 allows): the upload
        no longer lists, so the stored part ETags are unknown; the answer is the object's, if the
        current object is proven to be exactly the parts named (their plaintext MD5s, in order).
        ``None``: it is not (the upstream answers the Complete, see :meth:`_unlisted`)."""
        claimed = effective(claimed)
        if status != 404 or not claimed:
            return None
        try:
            current = await self.objects.current(upload.without("uploadId"))
        except IntegrityError:
            return None  # (not an object whose parts are proven)
        info = current.info if current is not None else None
        multipart = current is not None and current.marker is not None and current.marker.multipart
        if info is None or info.etag is None or not multipart or len(info.trailers) != len(claimed):
            return None
        for (_, etag), trailer in zip(claimed, info.trailers, strict=True):
            if trailer is None or md5_of_etag(etag) != trailer.md5:
                return None
        body = _with_info(_result_document(request, upload, info.etag), info)
        return web.Response(status=200, body=body, content_type="application/xml")
