"""What the read handlers share: the client's range and conditions taken apart from what goes
upstream, the answer planned on the plaintext (core/readplan.py), the plaintext response's
headers (ETag, tag count), and the rule for objects the proxy did not write. See
docs/design.md, Reading."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from aiohttp import web

from s3proxy.config import Config
from s3proxy.core.conditions import CONDITION_HEADERS
from s3proxy.core.errors import (
    AccessDeniedByProxy,
    PreconditionChanged,
)
from s3proxy.core.headers import (
    HeaderPairs,
    Headers,
    client_response_headers,
    upstream_request_headers,
)
from s3proxy.core.marker import Marker
from s3proxy.core.numbers import parse_decimal
from s3proxy.core.objectinfo import ObjectInfo, ObjectSummary
from s3proxy.core.readplan import NOT_MODIFIED, ReadAnswer, ReadQuery, plan_read
from s3proxy.core.request import Target
from s3proxy.core.sizes import READ_CHUNK
from s3proxy.store.objects import WHOLE_READ_LIMIT as WHOLE_READ_LIMIT  # the read handlers'
from s3proxy.store.objects import last_modified as last_modified  # the read handlers' too
from s3proxy.telemetry.accesslog import count_upstream
from s3proxy.upstream import errors as upstream_errors
from s3proxy.upstream.response import Response


async def read_exactly(resp: Response, count: int) -> bytes:
    with upstream_errors.reading():
        return count_upstream(await resp.content.readexactly(count))


async def upstream_chunks(resp: Response) -> AsyncIterator[bytes]:
    async for chunk in resp.content.iter_chunked(READ_CHUNK):
        yield count_upstream(chunk)


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


def check_unencrypted(config: Config, target: Target, resp: Response) -> None:
    """403 unless S3PROXY_UNENCRYPTED_* allow returning this object as it is stored."""
    if not config.unencrypted.allows(target.bucket or "", target.key or "", last_modified(resp)):
        raise AccessDeniedByProxy(
            "The object was not written through s3proxy (it is not encrypted), and "
            "S3PROXY_UNENCRYPTED_OBJECTS does not allow returning it."
        )


@dataclass(frozen=True)
class ReadHeaders:
    """A read's request headers: those forwarded upstream, and apart from them what the proxy
    evaluates on the plaintext (the client's Range, If-Range and conditions)."""

    forwarded: HeaderPairs
    query: ReadQuery

    @classmethod
    def of(cls, request: web.Request, part_number: str | None = None) -> ReadHeaders:
        """The headers of a GET or HEAD; ``part_number``: the query's ``partNumber``."""
        sent = Headers(upstream_request_headers(request.headers.items(), encrypting=False))
        conditions = [(k, v) for k, v in sent if k.lower() in CONDITION_HEADERS]
        query = ReadQuery.of(
            request.headers, conditions, part_number=part_number, body=request.method != "HEAD"
        )
        return cls(sent.without("range", "if-range", *CONDITION_HEADERS).pairs(), query)

    def as_sent(self) -> HeaderPairs:
        """The client's headers again, its range and conditions included: for an object the
        proxy did not write, which the upstream answers as the client asked."""
        query = self.query
        again = [*self.forwarded, *query.conditions]
        if query.part_number is None:
            again += [("Range", query.range)] if query.range else []
            again += [("If-Range", query.if_range)] if query.if_range is not None else []
        return again


def read_answer(
    query: ReadQuery,
    info: ObjectInfo | ObjectSummary,
    marker: Marker | None,
    resp: Response,
) -> ReadAnswer:
    """:func:`plan_read` on what the store's response ``resp`` shows of the object; a 304 is
    raised as :class:`NotModified`, which the application answers."""
    stored_etag = resp.headers.get("ETag")
    answer = plan_read(query, info, marker, stored_etag, last_modified(resp))
    if answer.status == NOT_MODIFIED:
        kept = [
            (k, v)
            for k, v in plaintext_headers(resp.headers.items(), answer.etag)
            if k.lower() in ("etag", "last-modified", "cache-control", "expires", "vary")
        ]
        raise NotModified(kept)
    return answer


class NotModified(Exception):
    """304 Not Modified: not an error; the application answers it with these headers."""

    def __init__(self, headers: HeaderPairs) -> None:
        super().__init__("not modified")
        self.headers = headers


def unencrypted_allowed(config: Config, target: Target, resp: Response) -> None:
    """An object without the proxy's marker may be returned as stored only where the policy
    allows; one that has the marker never (it changed under the request)."""
    if Marker.of(resp.headers) is not None:
        raise PreconditionChanged("The object changed while s3proxy read it; retry.")
    check_unencrypted(config, target, resp)
