"""Small pieces of the HTTP shell shared by the handlers: relaying an upstream response,
cutting a connection short, and the encryption marker of upstream responses."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextvars import ContextVar

import aiohttp
from aiohttp import web

from s3proxy.core.errors import IntegrityError
from s3proxy.core.headers import (
    Headers,
    client_response_headers,
    own_metadata,
    parse_marker,
)
from s3proxy.core.numbers import parse_decimal

log = logging.getLogger("s3proxy")

READ_CHUNK = 256 * 1024

# Body bytes received from the upstream for the current client request (for the access log).
upstream_bytes: ContextVar[list[int]] = ContextVar("upstream_bytes")


def count_upstream(data: bytes) -> bytes:
    counter = upstream_bytes.get(None)
    if counter is not None:
        counter[0] += len(data)
    return data


class BodyResponse(web.StreamResponse):
    """A streamed response whose headers go out with its first body bytes, in one send, as
    aiohttp does for a whole ``web.Response``: on loopback a send costs as much as the
    proxy's own work on a small body (docs/performance-history.md, Changes and what they
    bought)."""

    _send_headers_immediately = False


class Aborted(Exception):
    """The response had started when an error came; the connection was cut."""


class Marker:
    """The fields of an object's ``x-amz-meta-s3proxy-encryption`` metadata."""

    def __init__(
        self,
        segment_size: int,
        multipart: bool,
        checksum: str | None = None,
        version: int = 1,
        checksum_algorithm: str | None = None,
        checksum_type: str | None = None,
    ) -> None:
        self.segment_size = segment_size
        self.multipart = multipart
        self.checksum = checksum  # v1: "<algorithm>:<base64>" of the whole plaintext, if known
        self.version = version  # the format version the object's streams were written in
        # Multipart: the checksum algorithm and type the client chose at CreateMultipartUpload.
        self.checksum_algorithm = checksum_algorithm
        self.checksum_type = checksum_type

    def checksum_headers(self) -> list[tuple[str, str]]:
        """The plaintext's checksum as S3 reports a full-object checksum."""
        if self.checksum is None or ":" not in self.checksum:
            return []
        algorithm, _, value = self.checksum.partition(":")
        return [(f"x-amz-checksum-{algorithm}", value), ("x-amz-checksum-type", "FULL_OBJECT")]

    @classmethod
    def of(cls, resp: aiohttp.ClientResponse) -> Marker | None:
        value = own_metadata(resp.headers, "encryption")
        if value is None:
            return None
        fields = parse_marker(value)
        seg = parse_decimal(fields.get("seg"), low=1)
        version = fields.get("v")
        if version not in ("1", "2") or seg is None:
            raise IntegrityError(
                "The stored object carries an s3proxy marker this version cannot read."
            )
        return cls(
            seg,
            fields.get("mp") == "1",
            own_metadata(resp.headers, "checksum"),
            1 if version == "1" else 2,
            fields.get("ck") or None,
            fields.get("ct") or None,
        )


def content_length(resp: aiohttp.ClientResponse) -> int | None:
    return parse_decimal(resp.headers.get("Content-Length"))


def content_range_total(resp: aiohttp.ClientResponse) -> int | None:
    return parse_decimal(resp.headers.get("Content-Range", "").rpartition("/")[2])


def add_headers(resp: web.StreamResponse, headers: Headers) -> None:
    for name, value in headers:
        resp.headers.add(name, value)


def abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


async def relay(request: web.Request, upstream_resp: aiohttp.ClientResponse) -> web.StreamResponse:
    """Stream an upstream response to the client unchanged (hop-by-hop headers aside)."""
    resp = BodyResponse(status=upstream_resp.status, reason=upstream_resp.reason)
    add_headers(resp, client_response_headers(upstream_resp.headers.items(), decrypted=False))
    length = content_length(upstream_resp)
    if length is not None:
        resp.content_length = length
    await resp.prepare(request)
    if request.method != "HEAD" and upstream_resp.status not in (204, 304):
        try:
            async for chunk in upstream_resp.content.iter_chunked(READ_CHUNK):
                await resp.write(count_upstream(chunk))
        except aiohttp.ClientError as exc:
            log.error("upstream response broke off: %s", type(exc).__name__)
            abort(request)
            raise Aborted() from exc
    await resp.write_eof()
    return resp


def relay_body(
    upstream_resp: aiohttp.ClientResponse,
    body: bytes,
    extra: Headers | None = None,
    *,
    status: int | None = None,
) -> web.Response:
    """A small upstream response with a replaced body (and its stored-object checksums and
    the proxy's metadata removed), plus ``extra`` headers, which replace any of their names."""
    replaced = {name.lower() for name, _ in extra or []}
    headers = [
        (name, value)
        for name, value in client_response_headers(upstream_resp.headers.items(), decrypted=True)
        if name.lower() not in replaced
    ]
    if status is None:
        resp = web.Response(status=upstream_resp.status, reason=upstream_resp.reason, body=body)
    else:
        resp = web.Response(status=status, body=body or None)
    add_headers(resp, [*headers, *(extra or [])])
    return resp


async def no_bytes() -> AsyncIterator[bytes]:
    """An empty body stream."""
    return
    yield b""
