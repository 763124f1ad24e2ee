"""Handlers that read objects: GetObject (whole or ranged) and HeadObject report and return the
plaintext, with its ETag and checksum; listings and ListParts report plaintext sizes and ETags.
See docs/design.md, Reading."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Iterable
from email.utils import parsedate_to_datetime

import aiohttp
from aiohttp import web

from s3proxy.config import Config
from s3proxy.core.conditions import CONDITION_HEADERS, evaluate, range_applies
from s3proxy.core.errors import (
    AccessDeniedByProxy,
    IntegrityError,
    InvalidArgument,
    InvalidPartNumber,
    InvalidRequest,
    NotImplementedByProxy,
    PreconditionChanged,
    PreconditionFailed,
    RangeError,
    S3ProxyError,
    UpstreamUnavailable,
)
from s3proxy.core.format import parse_header
from s3proxy.core.headers import (
    Headers,
    client_response_headers,
    get_header,
    upstream_request_headers,
)
from s3proxy.core.layout import PlanDecryptor, ReadPlan
from s3proxy.core.manifest import needs_manifest
from s3proxy.core.request import Target
from s3proxy.core.sizes import (
    HEADER_SIZE,
    RangeNotSatisfiable,
    parse_range,
)
from s3proxy.keys.transit import KeyService
from s3proxy.server.objects import ObjectInfo, ObjectInspector, check_marker
from s3proxy.server.relay import (
    READ_CHUNK,
    Aborted,
    Marker,
    abort,
    add_headers,
    content_length,
    count_upstream,
    relay,
)
from s3proxy.upstream.client import Upstream

log = logging.getLogger("s3proxy")

# A plain GET of a single-stream object up to this stored size whose layout is not cached reads
# the whole body before answering (its trailer, for the ETag, is at the end): one read chunk, as
# much as a streamed read holds anyway.
WHOLE_READ_LIMIT = READ_CHUNK


class Reader:
    def __init__(
        self, config: Config, keys: KeyService, upstream: Upstream, objects: ObjectInspector
    ) -> None:
        self.config = config
        self.keys = keys
        self.upstream = upstream
        self.objects = objects

    def _check_unencrypted_allowed(self, target: Target, resp: aiohttp.ClientResponse) -> None:
        """An object without the proxy's marker may be returned as stored only where the
        policy allows; one that has the marker never (it changed under the request)."""
        if Marker.of(resp) is not None:
            raise PreconditionChanged("The object changed while s3proxy read it; retry.")
        check_unencrypted(self.config, target, resp)

    async def probe_layout(
        self, target: Target, headers: Headers
    ) -> tuple[ObjectInfo, aiohttp.ClientResponse] | aiohttp.ClientResponse:
        return await self.objects.probe(target, headers)

    # ---- HeadObject --------------------------------------------------------------------------

    async def head_object(self, request: web.Request, target: Target) -> web.StreamResponse:
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        range_value = _pop_header(headers, "Range")
        conditions = _pop_conditions(headers)
        upstream_resp = await self.upstream.send("HEAD", target, headers)
        async with upstream_resp:
            marker = Marker.of(upstream_resp) if upstream_resp.status == 200 else None
            if marker is None:
                if upstream_resp.status != 200:
                    return await relay(request, upstream_resp)
                self._check_unencrypted_allowed(target, upstream_resp)
                if range_value is None and not conditions:
                    return await relay(request, upstream_resp)
            else:
                return await self._head_encrypted(
                    request, target, upstream_resp, marker, range_value, conditions
                )
        again = [*headers, *conditions, *([("Range", range_value)] if range_value else [])]
        plain = await self.upstream.send("HEAD", target, [*again, *_if_range(request)])
        async with plain:
            if plain.status in (200, 206):
                self._check_unencrypted_allowed(target, plain)
            return await relay(request, plain)

    async def _head_encrypted(
        self,
        request: web.Request,
        target: Target,
        upstream_resp: aiohttp.ClientResponse,
        marker: Marker,
        range_value: str | None,
        conditions: Headers,
    ) -> web.StreamResponse:
        stored_total = content_length(upstream_resp)
        if stored_total is None:
            raise IntegrityError("The upstream did not report the stored object's size.")
        stored_etag = upstream_resp.headers.get("ETag")
        # The header too (and the trailer in v2), or their authenticated copy cached under this
        # stored ETag and size: the marker alone must never decide the size a client is told
        # (docs/design.md, Reading).
        info = self.objects.cached(target, stored_etag, stored_total, None)
        if info is not None:
            check_marker(info.layout.streams[0].header, marker)
        else:
            same = [("If-Match", stored_etag)] if stored_etag else []
            # A small single stream is read whole: its trailer comes with its header.
            small = not marker.multipart and stored_total <= WHOLE_READ_LIMIT
            found = await self.objects.probe(
                target, same, length=stored_total if small else HEADER_SIZE
            )
            if isinstance(found, aiohttp.ClientResponse):
                found.release()
                raise PreconditionChanged("The object changed while s3proxy read it; retry.")
            info = found[0]
        if info.layout.stored_length != stored_total:
            raise IntegrityError("The stored object's streams do not add up to its size.")
        total, etag = info.size, info.etag or stored_etag
        checksums = _checksum_headers(info, marker)
        _check_conditions(request, conditions, etag, upstream_resp)
        status, length, content_range = 200, total, None
        if not range_applies(
            request.headers.get("If-Range"), etag or "", _last_modified(upstream_resp)
        ):
            range_value = None
        if range_value is not None:
            first_last = _client_range(range_value, total)
            if first_last is not None:
                first, last = first_last
                status, length = 206, last - first + 1
                content_range = f"bytes {first}-{last}/{total}"
        resp = web.StreamResponse(status=status)
        add_headers(
            resp, _plaintext_headers(upstream_resp.headers.items(), etag, _hidden_tags(info))
        )
        if content_range:
            resp.headers["Content-Range"] = content_range
        elif _checksum_mode(request):
            add_headers(resp, checksums)
        resp.content_length = length
        await resp.prepare(request)
        await resp.write_eof()
        return resp

    # ---- GetObject ---------------------------------------------------------------------------

    async def get_object(self, request: web.Request, target: Target) -> web.StreamResponse:
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        range_value = _pop_header(headers, "Range")
        conditions = _pop_conditions(headers)
        if range_value is not None or conditions:
            return await self._get_probed(request, target, headers, range_value, conditions)
        # Without a Range, If-Range means nothing; it never goes upstream (the upstream would
        # compare it with its own ETag and answer a whole stored object).
        upstream_resp = await self.upstream.send("GET", target, headers)
        async with upstream_resp:
            marker = Marker.of(upstream_resp) if upstream_resp.status == 200 else None
            if marker is None:
                if upstream_resp.status == 200:
                    self._check_unencrypted_allowed(target, upstream_resp)
                return await relay(request, upstream_resp)
            stored_total = content_length(upstream_resp)
            if stored_total is None:
                raise IntegrityError("The upstream did not report the stored object's size.")
            if stored_total < HEADER_SIZE:
                raise IntegrityError("The stored object is shorter than its header.")
            head = await _read_exactly(upstream_resp, HEADER_SIZE)
            stored_etag = upstream_resp.headers.get("ETag")
            keys: dict[str, bytes] = {}
            first = parse_header(head)
            check_marker(first, marker)
            info = self.objects.cached(target, stored_etag, stored_total, first)
            if info is None and marker.multipart:
                # Its layout takes many ranged reads: the whole-object response does not wait
                # for them (an upstream may give up on a reader that stalls, as LocalStack
                # does after about a second); its plaintext is fetched again, If-Match.
                upstream_resp.close()
                info = await self.objects.build(
                    target, stored_etag, stored_total, first, marker, keys, known=head
                )
                return await self._send_span(
                    request,
                    target,
                    headers,
                    upstream_resp,
                    info.layout.plan_all(),
                    status=200,
                    content_range=None,
                    etag=info.etag or stored_etag,
                    extra=_checksum_headers(info, marker) if _checksum_mode(request) else [],
                    keys=keys,
                    hidden_tags=_hidden_tags(info),
                )
            if info is None:
                if not marker.multipart and stored_total <= WHOLE_READ_LIMIT:
                    # A small object arrives whole anyway: its trailer is in this response.
                    head += await _read_exactly(upstream_resp, stored_total - HEADER_SIZE)
                info = await self.objects.build(
                    target, stored_etag, stored_total, first, marker, keys, known=head
                )
            checksums = _checksum_headers(info, marker) if _checksum_mode(request) else []
            return await self._send_plan(
                request,
                _chunks(upstream_resp),
                info.layout.plan_all(),
                status=200,
                content_range=None,
                source_headers=upstream_resp.headers.items(),
                etag=info.etag or stored_etag,
                extra=checksums,
                prefix=head,
                keys=keys,
                hidden_tags=_hidden_tags(info),
            )

    async def _get_probed(
        self,
        request: web.Request,
        target: Target,
        headers: Headers,
        range_value: str | None,
        conditions: Headers,
    ) -> web.StreamResponse:
        """Ranged or conditional GET: the first 256 bytes tell whether the object is ours, its
        size and stored ETag; the proxy evaluates the conditions on the plaintext ETag, then a
        second request with ``If-Match`` fetches exactly the segments of the range."""
        keys: dict[str, bytes] = {}
        known = await self._get_known(request, target, headers, range_value, conditions, keys)
        if known is not None:
            return known
        found = await self.objects.probe(target, headers, keys)
        if isinstance(found, aiohttp.ClientResponse):
            async with found:
                if found.status not in (200, 206, 416):
                    return await relay(request, found)
            # Not ours (or empty): the upstream answers the client's own range and conditions.
            conditions = [*conditions, *_if_range(request)]
            again = [*headers, *conditions, *([("Range", range_value)] if range_value else [])]
            plain = await self.upstream.send("GET", target, again)
            async with plain:
                if plain.status in (200, 206):
                    self._check_unencrypted_allowed(target, plain)
                return await relay(request, plain)
        info, probe = found
        marker = Marker.of(probe)
        etag = info.etag or probe.headers.get("ETag")
        _check_conditions(request, conditions, etag, probe)
        total = info.size
        if_range = request.headers.get("If-Range")
        if not range_applies(if_range, etag or "", _last_modified(probe)):
            range_value = None  # a stale If-Range: the whole object, 200, decrypted as ever
        first_last = None if range_value is None else _client_range(range_value, total)
        extra: Headers = []
        if first_last is None:
            plan, status, content_range = info.layout.plan_all(), 200, None
            if _checksum_mode(request) and marker is not None:
                extra = _checksum_headers(info, marker)
        else:
            first, last = first_last
            plan = info.layout.plan_range(first, last)
            status, content_range = 206, f"bytes {first}-{last}/{total}"
        return await self._send_span(
            request,
            target,
            headers,
            probe,
            plan,
            status=status,
            content_range=content_range,
            etag=etag,
            extra=extra,
            keys=keys,
            hidden_tags=_hidden_tags(info),
        )

    async def _get_known(
        self,
        request: web.Request,
        target: Target,
        headers: Headers,
        range_value: str | None,
        conditions: Headers,
        keys: dict[str, bytes],
    ) -> web.StreamResponse | None:
        """Ranged or conditional GET of an object whose layout this process holds under the
        stored ETag it last saw: one request for the span, ``If-Match`` that stored ETag. The
        client's conditions are evaluated on the cached plaintext ETag and the answer's
        Last-Modified before anything is sent. ``None``: not known, or the object changed (or
        the request needs the probe): the caller probes (docs/design.md, Reading without a
        probe)."""
        if any(k.lower() in ("if-none-match", "if-modified-since") for k, _ in conditions):
            return None  # revalidations mostly end in 304: the probe costs less than a span
        if_range = request.headers.get("If-Range")
        if if_range is not None and not if_range.strip().startswith(("W/", '"')):
            return None  # a date needs the object's Last-Modified before the range is chosen
        seen = self.objects.last_seen(target)
        if seen is None:
            return None
        stored_etag, info = seen
        etag = info.etag or stored_etag
        total = info.size
        if not range_applies(if_range, etag, None):
            range_value = None
        try:
            first_last = None if range_value is None else _client_range(range_value, total)
        except RangeError:
            return None  # perhaps a size that changed: the probe tells
        if first_last is None:
            plan, status, content_range = info.layout.plan_all(), 200, None
        else:
            first, last = first_last
            plan = info.layout.plan_range(first, last)
            status, content_range = 206, f"bytes {first}-{last}/{total}"
        span = await self.objects.known_span(target, headers, stored_etag, info, plan)
        if span is None:
            return None
        async with span.resp:
            marker = Marker.of(span.resp)
            _check_conditions(request, conditions, etag, span.resp)
            extra: Headers = []
            if first_last is None and _checksum_mode(request) and marker is not None:
                extra = _checksum_headers(info, marker)
            return await self._send_plan(
                request,
                span.chunks(),
                plan,
                status=status,
                content_range=content_range,
                source_headers=span.resp.headers.items(),
                etag=etag,
                extra=extra,
                keys=keys,
                hidden_tags=_hidden_tags(info),
            )

    async def _send_span(
        self,
        request: web.Request,
        target: Target,
        headers: Headers,
        probe: aiohttp.ClientResponse,
        plan: ReadPlan,
        *,
        status: int,
        content_range: str | None,
        etag: str | None,
        extra: Headers | None = None,
        keys: dict[str, bytes] | None = None,
        hidden_tags: int = 0,
    ) -> web.StreamResponse:
        """Fetch the stored bytes of ``plan`` from the object the probe saw (``If-Match`` its
        stored ETag; the client's own conditions were checked already) and send the plaintext."""
        stored_etag = probe.headers.get("ETag")
        span = await self.objects.fetch_span(target, headers, stored_etag, plan)
        async with span.resp:
            return await self._send_plan(
                request,
                span.chunks(),
                plan,
                status=status,
                content_range=content_range,
                source_headers=probe.headers.items(),
                etag=etag,
                extra=extra,
                keys=keys,
                hidden_tags=hidden_tags,
            )

    async def _send_plan(
        self,
        request: web.Request,
        chunks: AsyncIterator[bytes],
        plan: ReadPlan,
        *,
        status: int,
        content_range: str | None,
        source_headers: object,
        etag: str | None,
        extra: Headers | None = None,
        prefix: bytes = b"",
        keys: dict[str, bytes] | None = None,
        hidden_tags: int = 0,
    ) -> web.StreamResponse:
        """Decrypt the fetched stored bytes into the client's response. The first segment is
        authenticated before the response starts, so most failures become a proper S3 error;
        a later failure cuts the connection short of the announced Content-Length."""
        decryptor = PlanDecryptor(plan)
        request_keys: dict[str, bytes] = {} if keys is None else keys

        async def keyed() -> bytes | bytearray:
            """The decryptor's key for the next stream, and what the wait held back."""
            out: list[bytes | bytearray] = []
            while decryptor.needs_key is not None:
                wrapped = decryptor.needs_key.wrapped_key
                decryptor.provide_key(await self.objects.unwrap(wrapped, request_keys))
                out.append(decryptor.feed(b""))
            return out[0] if len(out) == 1 else b"".join(out)

        async def step(data: bytes) -> bytes | bytearray:
            out = decryptor.feed(data)
            if decryptor.needs_key is None:
                return out
            return out + await keyed()

        try:
            pending = await step(prefix)
            while not pending and not decryptor.done:
                chunk = await anext(chunks, None)
                if chunk is None:
                    decryptor.finish()  # raises: truncated
                    break
                pending = await step(chunk)
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable("The upstream response broke off.") from exc
        resp = web.StreamResponse(status=status)
        add_headers(resp, _plaintext_headers(source_headers, etag, hidden_tags))  # type: ignore[arg-type]
        add_headers(resp, extra or [])
        if content_range:
            resp.headers["Content-Range"] = content_range
        resp.content_length = plan.length
        await resp.prepare(request)
        try:
            if pending:
                await resp.write(pending)
            async for chunk in chunks:
                out = await step(chunk)
                if out:
                    await resp.write(out)
            decryptor.finish()
        except IntegrityError as exc:
            log.error(
                "integrity error while streaming %s: %s",
                request.path,
                exc.message,
                extra={"integrity": True},
            )
            abort(request)
            raise Aborted() from exc
        except aiohttp.ClientError as exc:  # the network, not the stored data
            log.error(
                "upstream broke off while streaming %s (%s)", request.path, type(exc).__name__
            )
            abort(request)
            raise Aborted() from exc
        except S3ProxyError as exc:  # Vault failed for a later stream
            log.error("read of %s failed mid-body: %s", request.path, exc.message)
            abort(request)
            raise Aborted() from exc
        await resp.write_eof()
        return resp

    # ---- GetObject / HeadObject ?partNumber=N ------------------------------------------------

    async def read_part(self, request: web.Request, target: Target) -> web.StreamResponse:
        """One part of an object, as S3 serves it: 206, the part's plaintext bytes, their place
        in the whole object in ``Content-Range``, and ``x-amz-mp-parts-count``."""
        number_text = target.param("partNumber") or ""
        if not number_text.isdigit() or not 1 <= int(number_text) <= 10000:
            raise InvalidArgument("Part number must be an integer between 1 and 10000, inclusive")
        if request.headers.get("Range") is not None:
            raise InvalidRequest("Cannot specify both Range header and partNumber query parameter")
        number = int(number_text)
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        conditions = _pop_conditions(headers)
        whole = target.without("partNumber")
        keys: dict[str, bytes] = {}
        found = await self.objects.probe(whole, headers, keys)
        if isinstance(found, aiohttp.ClientResponse):
            async with found:
                if found.status not in (200, 206, 416):
                    return await relay(request, found)
            plain = await self.upstream.send(request.method, target, [*headers, *conditions])
            async with plain:
                if plain.status in (200, 206):
                    self._check_unencrypted_allowed(target, plain)
                return await relay(request, plain)
        info, probe = found
        layout = info.layout
        marker = Marker.of(probe)
        parts = len(layout.streams)
        stored_etag = probe.headers.get("ETag", "")
        suffix = stored_etag.strip('"').rpartition("-")[2]
        if marker is not None and marker.multipart and suffix.isdigit() and int(suffix) != parts:
            raise NotImplementedByProxy(
                "s3proxy does not support this request: partNumber reads of an object whose "
                "parts were copied from other multipart objects"
            )
        etag = info.etag or stored_etag
        _check_conditions(request, conditions, etag, probe)
        if number > parts:
            raise InvalidPartNumber("The requested partnumber is not satisfiable")
        stream = layout.streams[number - 1]
        first = stream.plaintext_offset
        last = first + stream.plaintext_length - 1
        total = layout.plaintext_length
        extra = [("x-amz-mp-parts-count", str(parts))] if marker and marker.multipart else []
        part_checksum = info.part_checksum(number - 1)
        if _checksum_mode(request) and part_checksum is not None:
            extra.append((f"x-amz-checksum-{part_checksum[0]}", part_checksum[1]))
        if request.method == "HEAD" or stream.plaintext_length == 0:
            resp = web.StreamResponse(status=206)
            add_headers(resp, _plaintext_headers(probe.headers.items(), etag, _hidden_tags(info)))
            add_headers(resp, extra)
            if stream.plaintext_length:
                resp.headers["Content-Range"] = f"bytes {first}-{last}/{total}"
            resp.content_length = stream.plaintext_length
            await resp.prepare(request)
            await resp.write_eof()
            return resp
        return await self._send_span(
            request,
            whole,
            headers,
            probe,
            layout.plan_range(first, last),
            status=206,
            content_range=f"bytes {first}-{last}/{total}",
            etag=etag,
            extra=extra,
            keys=keys,
            hidden_tags=_hidden_tags(info),
        )


async def _read_exactly(resp: aiohttp.ClientResponse, count: int) -> bytes:
    try:
        return count_upstream(await resp.content.readexactly(count))
    except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
        # Fewer bytes than the response announced: the connection, not the data.
        raise UpstreamUnavailable("The upstream response broke off.") from exc


async def _chunks(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in resp.content.iter_chunked(READ_CHUNK):
        yield count_upstream(chunk)


def _checksum_mode(request: web.Request) -> bool:
    return request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"


def _checksum_headers(info: ObjectInfo, marker: Marker) -> Headers:
    """The plaintext's full-object checksum as S3 reports it (v2: from the trailer; v1: from
    the proxy's metadata)."""
    if info.checksum is None:
        return marker.checksum_headers() if marker.version == 1 else []
    return info.checksum.headers


def _plaintext_headers(
    source: Iterable[tuple[str, str]], etag: str | None, hidden_tags: int = 0
) -> Headers:
    """The upstream's headers as the client sees them for a decrypted object, with the
    plaintext ETag in place of the stored one, and a tag count without the proxy's own tags."""
    out = []
    for k, v in client_response_headers(source, decrypted=True):
        name = k.lower()
        if name == "etag" and etag is not None:
            v = etag
        elif name == "x-amz-tagging-count" and hidden_tags and v.strip().isdigit():
            count = int(v) - hidden_tags
            if count <= 0:
                continue
            v = str(count)
        out.append((k, v))
    return out


def _hidden_tags(info: ObjectInfo) -> int:
    """How many of the object's tags are the proxy's (its manifest)."""
    return 1 if needs_manifest(info.layout) else 0


def check_unencrypted(config: Config, target: Target, resp: aiohttp.ClientResponse) -> None:
    """403 unless S3PROXY_UNENCRYPTED_* allow returning this object as it is stored."""
    if not config.unencrypted.allows(target.bucket or "", target.key or "", _last_modified(resp)):
        raise AccessDeniedByProxy(
            "The object was not written through s3proxy (it is not encrypted), and "
            "S3PROXY_UNENCRYPTED_OBJECTS does not allow returning it."
        )


def _pop_conditions(headers: Headers) -> Headers:
    """Remove and return the conditional headers (the proxy evaluates them on the plaintext
    ETag; the upstream only ever sees its own ETag). ``If-Range`` is removed too; it is read
    from the request where it applies (:func:`range_applies`)."""
    taken = [(k, v) for k, v in headers if k.lower() in CONDITION_HEADERS]
    dropped = {*CONDITION_HEADERS, "if-range"}
    headers[:] = [(k, v) for k, v in headers if k.lower() not in dropped]
    return taken


def _if_range(request: web.Request) -> Headers:
    """The client's own If-Range, for a request relayed about an object the proxy did not
    write (the upstream's ETag is then the client's)."""
    value = request.headers.get("If-Range")
    return [("If-Range", value)] if value is not None else []


def _last_modified(resp: aiohttp.ClientResponse) -> dt.datetime | None:
    value = resp.headers.get("Last-Modified")
    if value is None:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def _check_conditions(
    request: web.Request, conditions: Headers, etag: str | None, resp: aiohttp.ClientResponse
) -> None:
    """Raise for a failed precondition (412) or an unmodified object (304)."""
    if not conditions:
        return
    verdict = evaluate(dict(conditions), etag or "", _last_modified(resp))
    if verdict == 412:
        raise PreconditionFailed()
    if verdict == 304:
        kept = [
            (k, v)
            for k, v in _plaintext_headers(resp.headers.items(), etag)
            if k.lower() in ("etag", "last-modified", "cache-control", "expires", "vary")
        ]
        raise NotModified(kept)


class NotModified(Exception):
    """304 Not Modified: not an error; the application answers it with these headers."""

    def __init__(self, headers: Headers) -> None:
        super().__init__("not modified")
        self.headers = headers


def _client_range(value: str, total: int) -> tuple[int, int] | None:
    try:
        return parse_range(value, total)
    except RangeNotSatisfiable as exc:
        raise RangeError(total) from exc


def _pop_header(headers: Headers, name: str) -> str | None:
    value = get_header(headers, name)
    headers[:] = [(k, v) for k, v in headers if k.lower() != name.lower()]
    return value
