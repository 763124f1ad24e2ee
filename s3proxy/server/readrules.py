"""What the read handlers share: the plaintext response's headers (ETag, checksums, tag count),
the client's conditions and ranges evaluated on the plaintext, and the rule for objects the proxy
did not write. See docs/design.md, Reading."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from s3proxy.config import Config
from s3proxy.core.conditions import CONDITION_HEADERS, evaluate
from s3proxy.core.errors import (
    AccessDeniedByProxy,
    PreconditionChanged,
    PreconditionFailed,
    RangeError,
    UpstreamUnavailable,
)
from s3proxy.core.headers import (
    HeaderPairs,
    client_response_headers,
    get_header,
    upstream_request_headers,
)
from s3proxy.core.manifest import needs_manifest
from s3proxy.core.marker import Marker
from s3proxy.core.numbers import parse_decimal
from s3proxy.core.objectinfo import ObjectInfo
from s3proxy.core.request import Target
from s3proxy.core.sizes import READ_CHUNK, RangeNotSatisfiable, parse_range
from s3proxy.store.objects import last_modified as last_modified  # the read handlers' too
from s3proxy.telemetry.accesslog import count_upstream

# A plain GET of a single-stream object up to this stored size whose layout is not cached reads
# the whole body before answering (its trailer, for the ETag, is at the end): one read chunk, as
# much as a streamed read holds anyway.
WHOLE_READ_LIMIT = READ_CHUNK


async def read_exactly(resp: aiohttp.ClientResponse, count: int) -> bytes:
    try:
        return count_upstream(await resp.content.readexactly(count))
    except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
        # Fewer bytes than the response announced: the connection, not the data.
        raise UpstreamUnavailable("The upstream response broke off.") from exc


async def upstream_chunks(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in resp.content.iter_chunked(READ_CHUNK):
        yield count_upstream(chunk)


def checksum_mode(request: web.Request) -> bool:
    return request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"


def checksum_headers(info: ObjectInfo, marker: Marker) -> HeaderPairs:
    """The plaintext's full-object checksum as S3 reports it (v2: from the trailer; v1: from
    the proxy's metadata)."""
    if info.checksum is None:
        return marker.checksum_headers() if marker.version == 1 else []
    return info.checksum.headers


def plaintext_headers(
    source: Iterable[tuple[str, str]], etag: str | None, hidden_tags: int = 0
) -> HeaderPairs:
    """The upstream's headers as the client sees them for a decrypted object, with the
    plaintext ETag in place of the stored one, and a tag count without the proxy's own tags."""
    out = []
    for k, v in client_response_headers(source, decrypted=True):
        name = k.lower()
        if name == "etag" and etag is not None:
            v = etag
        elif name == "x-amz-tagging-count" and hidden_tags and _count(v) is not None:
            count = (_count(v) or 0) - hidden_tags
            if count <= 0:
                continue
            v = str(count)
        out.append((k, v))
    return out


def _count(value: str) -> int | None:
    return parse_decimal(value.strip())


def hidden_tags(info: ObjectInfo) -> int:
    """How many of the object's tags are the proxy's (its manifest)."""
    return 1 if needs_manifest(info.layout) else 0


def check_unencrypted(config: Config, target: Target, resp: aiohttp.ClientResponse) -> None:
    """403 unless S3PROXY_UNENCRYPTED_* allow returning this object as it is stored."""
    if not config.unencrypted.allows(target.bucket or "", target.key or "", last_modified(resp)):
        raise AccessDeniedByProxy(
            "The object was not written through s3proxy (it is not encrypted), and "
            "S3PROXY_UNENCRYPTED_OBJECTS does not allow returning it."
        )


@dataclass(frozen=True)
class ReadHeaders:
    """A read's request headers: those forwarded upstream, and apart from them the client's
    Range and conditions, which the proxy evaluates on the plaintext."""

    forwarded: HeaderPairs
    range_value: str | None
    conditions: HeaderPairs

    @classmethod
    def of(cls, request: web.Request) -> ReadHeaders:
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        range_value = pop_header(headers, "Range")
        return cls(headers, range_value, pop_conditions(headers))


def pop_conditions(headers: HeaderPairs) -> HeaderPairs:
    """Remove and return the conditional headers (the proxy evaluates them on the plaintext
    ETag; the upstream only ever sees its own ETag). ``If-Range`` is removed too; it is read
    from the request where it applies (:func:`range_applies`)."""
    taken = [(k, v) for k, v in headers if k.lower() in CONDITION_HEADERS]
    dropped = {*CONDITION_HEADERS, "if-range"}
    headers[:] = [(k, v) for k, v in headers if k.lower() not in dropped]
    return taken


def if_range_header(request: web.Request) -> HeaderPairs:
    """The client's own If-Range, for a request relayed about an object the proxy did not
    write (the upstream's ETag is then the client's)."""
    value = request.headers.get("If-Range")
    return [("If-Range", value)] if value is not None else []


def check_conditions(
    request: web.Request, conditions: HeaderPairs, etag: str | None, resp: aiohttp.ClientResponse
) -> None:
    """Raise for a failed precondition (412) or an unmodified object (304)."""
    if not conditions:
        return
    verdict = evaluate(dict(conditions), etag or "", last_modified(resp))
    if verdict == 412:
        raise PreconditionFailed()
    if verdict == 304:
        kept = [
            (k, v)
            for k, v in plaintext_headers(resp.headers.items(), etag)
            if k.lower() in ("etag", "last-modified", "cache-control", "expires", "vary")
        ]
        raise NotModified(kept)


class NotModified(Exception):
    """304 Not Modified: not an error; the application answers it with these headers."""

    def __init__(self, headers: HeaderPairs) -> None:
        super().__init__("not modified")
        self.headers = headers


def client_range(value: str, total: int) -> tuple[int, int] | None:
    try:
        return parse_range(value, total)
    except RangeNotSatisfiable as exc:
        raise RangeError(total) from exc


def pop_header(headers: HeaderPairs, name: str) -> str | None:
    value = get_header(headers, name)
    headers[:] = [(k, v) for k, v in headers if k.lower() != name.lower()]
    return value


def unencrypted_allowed(config: Config, target: Target, resp: aiohttp.ClientResponse) -> None:
    """An object without the proxy's marker may be returned as stored only where the policy
    allows; one that has the marker never (it changed under the request)."""
    if Marker.of(resp.headers) is not None:
        raise PreconditionChanged("The object changed while s3proxy read it; retry.")
    check_unencrypted(config, target, resp)
