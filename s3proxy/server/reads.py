"""Handlers that read objects: GetObject (whole or ranged) and HeadObject report and return the
plaintext; ListParts reports plaintext part sizes. See docs/design.md, Reading."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Generic, TypeVar
from urllib.parse import unquote_plus

import aiohttp
from aiohttp import web

from s3proxy.config import Config
from s3proxy.core.errors import (
    AccessDeniedByProxy,
    IntegrityError,
    InvalidArgument,
    InvalidPartNumber,
    InvalidRequest,
    NotImplementedByProxy,
    PreconditionChanged,
    RangeError,
    S3ProxyError,
)
from s3proxy.core.format import Header, parse_header
from s3proxy.core.headers import (
    Headers,
    client_response_headers,
    get_header,
    upstream_request_headers,
)
from s3proxy.core.layout import Discovery, Layout, PlanDecryptor, ReadPlan, discover
from s3proxy.core.request import Target
from s3proxy.core.s3xml import (
    ListedObject,
    listed_objects,
    rewrite_listed_sizes,
    rewrite_part_sizes,
)
from s3proxy.core.sizes import (
    HEADER_SIZE,
    TAG_SIZE,
    RangeNotSatisfiable,
    parse_range,
    plaintext_length,
)
from s3proxy.keys.transit import KeyService
from s3proxy.server.relay import (
    READ_CHUNK,
    Aborted,
    Marker,
    abort,
    add_headers,
    content_length,
    content_range_total,
    count_upstream,
    relay,
    relay_body,
)
from s3proxy.upstream.client import Upstream

log = logging.getLogger("s3proxy")
V = TypeVar("V")

LAYOUT_CACHE_ENTRIES = 4096
SIZE_CACHE_ENTRIES = 65536
HEADER_FETCH_CONCURRENCY = 16
LIST_PROBE_CONCURRENCY = 32


CacheKey = tuple[str, str, str, str]  # bucket, key, version, ETag: an ETag names one content


class _Cache(Generic[V]):
    """A bounded LRU map."""

    def __init__(self, entries: int) -> None:
        self._entries = entries
        self._items: OrderedDict[CacheKey, V] = OrderedDict()

    def get(self, key: CacheKey) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: CacheKey, layout: V) -> None:
        self._items[key] = layout
        self._items.move_to_end(key)
        while len(self._items) > self._entries:
            self._items.popitem(last=False)


class Reader:
    def __init__(self, config: Config, keys: KeyService, upstream: Upstream) -> None:
        self.config = config
        self.keys = keys
        self.upstream = upstream
        self._layouts: _Cache[Layout] = _Cache(LAYOUT_CACHE_ENTRIES)
        self._sizes: _Cache[int] = _Cache(SIZE_CACHE_ENTRIES)

    def _check_unencrypted_allowed(self) -> None:
        if not self.config.allow_unencrypted:
            raise AccessDeniedByProxy(
                "The object was not written through s3proxy (it is not encrypted) and "
                "S3PROXY_UNENCRYPTED_OBJECTS=refuse."
            )

    # ---- layouts -----------------------------------------------------------------------------

    async def _fetch_header(self, target: Target, offset: int, etag: str | None) -> Header | None:
        headers: Headers = [("Range", f"bytes={offset}-{offset + HEADER_SIZE - 1}")]
        if etag:
            headers.append(("If-Match", etag))
        resp = await self.upstream.send("GET", target, headers)
        async with resp:
            if resp.status == 412:
                raise PreconditionChanged("The object changed while s3proxy read it; retry.")
            if resp.status != 206:
                return None
            data = count_upstream(await resp.read())
        try:
            return parse_header(data)
        except IntegrityError:
            return None

    async def layout(
        self, target: Target, etag: str | None, stored_total: int, first: Header, marker: Marker
    ) -> Layout:
        """Where the streams of an object lie; multipart objects take extra header reads
        (parallel, cached per ETag)."""
        if not marker.multipart:
            single = Layout.from_headers([first])
            if single.stored_length != stored_total:
                raise IntegrityError("The stored object's header does not match its size.")
            return single
        cache_key = (
            target.bucket or "",
            target.key or "",
            target.param("versionId") or "",
            etag or "",
        )
        cached = self._layouts.get(cache_key) if etag else None
        if cached is not None and cached.streams[0].header == first:
            return cached
        gate = asyncio.Semaphore(HEADER_FETCH_CONCURRENCY)

        async def fetch(offset: int) -> tuple[int, Header | None]:
            async with gate:
                return offset, await self._fetch_header(target, offset, etag)

        gen: Discovery = discover(stored_total, first)
        try:
            wanted = next(gen)
            while True:
                found = dict(await asyncio.gather(*(fetch(o) for o in wanted)))
                wanted = gen.send(found)
        except StopIteration as stop:
            layout: Layout = stop.value
        if etag:
            self._layouts.put(cache_key, layout)
        return layout

    async def probe_layout(
        self, target: Target, headers: Headers
    ) -> tuple[Layout, aiohttp.ClientResponse] | aiohttp.ClientResponse:
        """GET the first 256 bytes (with the client's conditions). Returns the layout and the
        probe response if the object is ours, else the probe response to relay or retry."""
        probe = await self.upstream.send(
            "GET", target, [*headers, ("Range", f"bytes=0-{HEADER_SIZE - 1}")]
        )
        try:
            marker = Marker.of(probe) if probe.status == 206 else None
            if marker is None:
                return probe  # the caller relays or releases it
            stored_total = content_range_total(probe)
            if stored_total is None:
                raise IntegrityError("The upstream did not report the stored object's size.")
            try:
                first = parse_header(count_upstream(await probe.content.readexactly(HEADER_SIZE)))
            except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
                raise IntegrityError("The stored object is shorter than its header.") from exc
        except BaseException:
            probe.release()
            raise
        probe.release()
        layout = await self.layout(target, probe.headers.get("ETag"), stored_total, first, marker)
        return layout, probe

    # ---- HeadObject --------------------------------------------------------------------------

    async def head_object(self, request: web.Request, target: Target) -> web.StreamResponse:
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        range_value = _pop_header(headers, "Range")
        upstream_resp = await self.upstream.send("HEAD", target, headers)
        async with upstream_resp:
            marker = Marker.of(upstream_resp) if upstream_resp.status == 200 else None
            if marker is None:
                if upstream_resp.status == 200:
                    self._check_unencrypted_allowed()
                    if range_value is not None:
                        again = await self.upstream.send(
                            "HEAD", target, [*headers, ("Range", range_value)]
                        )
                        async with again:
                            return await relay(request, again)
                return await relay(request, upstream_resp)
            stored_total = content_length(upstream_resp)
            if stored_total is None:
                raise IntegrityError("The upstream did not report the stored object's size.")
            if marker.multipart:
                etag = upstream_resp.headers.get("ETag")
                probe_headers: Headers = [("If-Match", etag)] if etag else []
                found = await self.probe_layout(target, probe_headers)
                if isinstance(found, aiohttp.ClientResponse):
                    found.release()
                    raise PreconditionChanged("The object changed while s3proxy read it; retry.")
                total = found[0].plaintext_length
            else:
                total = _single_stream_length(stored_total, marker.segment_size)
            status, length, content_range = 200, total, None
            if range_value is not None:
                first_last = _client_range(range_value, total)
                if first_last is not None:
                    first, last = first_last
                    status, length = 206, last - first + 1
                    content_range = f"bytes {first}-{last}/{total}"
            resp = web.StreamResponse(status=status)
            add_headers(
                resp, client_response_headers(upstream_resp.headers.items(), decrypted=True)
            )
            if content_range:
                resp.headers["Content-Range"] = content_range
            elif _checksum_mode(request):
                add_headers(resp, marker.checksum_headers())
            resp.content_length = length
            await resp.prepare(request)
            await resp.write_eof()
            return resp

    # ---- GetObject ---------------------------------------------------------------------------

    async def get_object(self, request: web.Request, target: Target) -> web.StreamResponse:
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        range_value = _pop_header(headers, "Range")
        if range_value is not None:
            return await self._get_range(request, target, headers, range_value)
        upstream_resp = await self.upstream.send("GET", target, headers)
        async with upstream_resp:
            marker = Marker.of(upstream_resp) if upstream_resp.status == 200 else None
            if marker is None:
                if upstream_resp.status == 200:
                    self._check_unencrypted_allowed()
                return await relay(request, upstream_resp)
            stored_total = content_length(upstream_resp)
            if stored_total is None:
                raise IntegrityError("The upstream did not report the stored object's size.")
            try:
                head = count_upstream(await upstream_resp.content.readexactly(HEADER_SIZE))
            except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
                raise IntegrityError("The stored object is shorter than its header.") from exc
            layout = await self.layout(
                target, upstream_resp.headers.get("ETag"), stored_total, parse_header(head), marker
            )
            checksums = marker.checksum_headers() if _checksum_mode(request) else []
            return await self._send_plan(
                request,
                upstream_resp,
                layout.plan_all(),
                status=200,
                content_range=None,
                source_headers=upstream_resp.headers.items(),
                extra=checksums,
                prefix=head,
            )

    async def _get_range(
        self, request: web.Request, target: Target, headers: Headers, range_value: str
    ) -> web.StreamResponse:
        """Ranged GET: the first 256 bytes tell whether the object is ours, its size and ETag;
        a second request with ``If-Match`` fetches exactly the segments of the range."""
        found = await self.probe_layout(target, headers)
        if isinstance(found, aiohttp.ClientResponse):
            async with found:
                if found.status not in (200, 206, 416):
                    return await relay(request, found)
            # Not ours (or empty): the upstream answers the client's own range.
            plain = await self.upstream.send("GET", target, [*headers, ("Range", range_value)])
            async with plain:
                if plain.status in (200, 206):
                    self._check_unencrypted_allowed()
                return await relay(request, plain)
        layout, probe = found
        total = layout.plaintext_length
        first_last = _client_range(range_value, total)
        if first_last is None:
            plan, status, content_range = layout.plan_all(), 200, None
        else:
            first, last = first_last
            plan = layout.plan_range(first, last)
            status, content_range = 206, f"bytes {first}-{last}/{total}"
        return await self._send_span(
            request, target, headers, probe, plan, status=status, content_range=content_range
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
        extra: Headers | None = None,
    ) -> web.StreamResponse:
        """Fetch the stored bytes of ``plan`` from the object the probe saw (``If-Match`` its
        ETag; the client's own conditions were checked by the probe) and send the plaintext."""
        span_headers = [(k, v) for k, v in headers if not k.lower().startswith("if-")]
        etag = probe.headers.get("ETag")
        if etag:
            span_headers.append(("If-Match", etag))
        span_headers.append(("Range", f"bytes={plan.stored_first}-{plan.stored_last}"))
        upstream_resp = await self.upstream.send("GET", target, span_headers)
        async with upstream_resp:
            if upstream_resp.status == 412:
                raise PreconditionChanged("The object changed while s3proxy read it; retry.")
            if upstream_resp.status != 206:
                raise IntegrityError("The upstream did not return the requested ciphertext range.")
            return await self._send_plan(
                request,
                upstream_resp,
                plan,
                status=status,
                content_range=content_range,
                source_headers=probe.headers.items(),
                extra=extra,
            )

    async def _send_plan(
        self,
        request: web.Request,
        upstream_resp: aiohttp.ClientResponse,
        plan: ReadPlan,
        *,
        status: int,
        content_range: str | None,
        source_headers: object,
        extra: Headers | None = None,
        prefix: bytes = b"",
    ) -> web.StreamResponse:
        """Decrypt the fetched stored bytes into the client's response. The first segment is
        authenticated before the response starts, so most failures become a proper S3 error;
        a later failure cuts the connection short of the announced Content-Length."""
        decryptor = PlanDecryptor(plan)
        keys: dict[str, bytes] = {}

        async def step(data: bytes) -> bytes:
            out = [decryptor.feed(data)]
            while decryptor.needs_key is not None:
                wrapped = decryptor.needs_key.wrapped_key
                if wrapped not in keys:
                    keys[wrapped] = await self.keys.unwrap(wrapped)
                decryptor.provide_key(keys[wrapped])
                out.append(decryptor.feed(b""))
            return b"".join(out)

        chunks = _chunks(upstream_resp)
        try:
            pending = await step(prefix)
            while not pending and not decryptor.done:
                chunk = await anext(chunks, None)
                if chunk is None:
                    decryptor.finish()  # raises: truncated
                    break
                pending = await step(chunk)
        except aiohttp.ClientError as exc:
            raise IntegrityError("The upstream response broke off.") from exc
        resp = web.StreamResponse(status=status)
        add_headers(resp, client_response_headers(source_headers, decrypted=True))  # type: ignore[arg-type]
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
        except (IntegrityError, aiohttp.ClientError) as exc:
            log.error(
                "integrity error while streaming %s: %s",
                request.path,
                exc.message
                if isinstance(exc, IntegrityError)
                else f"upstream broke off ({type(exc).__name__})",
                extra={"integrity": True},
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
        whole = target.without("partNumber")
        found = await self.probe_layout(whole, headers)
        if isinstance(found, aiohttp.ClientResponse):
            async with found:
                if found.status not in (200, 206, 416):
                    return await relay(request, found)
            plain = await self.upstream.send(request.method, target, headers)
            async with plain:
                if plain.status in (200, 206):
                    self._check_unencrypted_allowed()
                return await relay(request, plain)
        layout, probe = found
        marker = Marker.of(probe)
        parts = len(layout.streams)
        etag = probe.headers.get("ETag", "")
        suffix = etag.strip('"').rpartition("-")[2]
        if marker is not None and marker.multipart and suffix.isdigit() and int(suffix) != parts:
            raise NotImplementedByProxy(
                "s3proxy does not support this request: partNumber reads of an object whose "
                "parts were copied from other multipart objects"
            )
        if number > parts:
            raise InvalidPartNumber("The requested partnumber is not satisfiable")
        stream = layout.streams[number - 1]
        first = stream.plaintext_offset
        last = first + stream.plaintext_length - 1
        total = layout.plaintext_length
        extra = [("x-amz-mp-parts-count", str(parts))] if marker and marker.multipart else []
        if request.method == "HEAD" or stream.plaintext_length == 0:
            resp = web.StreamResponse(status=206)
            add_headers(resp, client_response_headers(probe.headers.items(), decrypted=True))
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
            extra=extra,
        )

    # ---- ListParts ---------------------------------------------------------------------------

    async def list_parts(self, request: web.Request, target: Target) -> web.StreamResponse:
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        upstream_resp = await self.upstream.send("GET", target, headers)
        async with upstream_resp:
            if upstream_resp.status != 200:
                return await relay(request, upstream_resp)
            seg = self.config.segment_size
            body = rewrite_part_sizes(
                await upstream_resp.read(), lambda n: _single_stream_length(n, seg)
            )
            return relay_body(upstream_resp, body)

    # ---- ListObjects, ListObjectsV2, ListObjectVersions -------------------------------------

    async def list_objects(self, request: web.Request, target: Target) -> web.StreamResponse:
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        upstream_resp = await self.upstream.send("GET", target, headers)
        async with upstream_resp:
            if upstream_resp.status != 200 or not self.config.exact_list_sizes:
                return await relay(request, upstream_resp)
            body = count_upstream(await upstream_resp.read())
        objects = listed_objects(body)
        url_encoded = target.param("encoding-type") == "url"
        gate = asyncio.Semaphore(LIST_PROBE_CONCURRENCY)

        async def size_of(obj: ListedObject) -> int:
            async with gate:
                return await self._listed_size(target.bucket or "", obj, url_encoded)

        sizes = await asyncio.gather(*(size_of(o) for o in objects))
        return relay_body(upstream_resp, rewrite_listed_sizes(body, list(sizes)))

    async def _listed_size(self, bucket: str, obj: ListedObject, url_encoded: bool) -> int:
        """The plaintext size of a listed object: stored size for objects not written by the
        proxy; else from a HEAD (and, for multipart objects, their stream headers). Cached by
        ETag. A failed look-up reports the stored size rather than failing the listing."""
        if obj.size < HEADER_SIZE + TAG_SIZE:
            return obj.size  # too small to be an encrypted stream
        key = unquote_plus(obj.key) if url_encoded else obj.key
        version = obj.version_id
        cache_key = (bucket, key, version or "", obj.etag or "")
        cached = self._sizes.get(cache_key)
        if cached is not None:
            return cached
        query = (("versionId", version),) if version else ()
        target = Target(bucket, key, query)
        try:
            size = await self._plaintext_size(target, obj.size)
        except (S3ProxyError, aiohttp.ClientError) as exc:
            log.warning("listing reports the stored size of %s/%s: %s", bucket, key, exc)
            return obj.size
        self._sizes.put(cache_key, size)
        return size

    async def _plaintext_size(self, target: Target, stored: int) -> int:
        head = await self.upstream.send("HEAD", target, [])
        async with head:
            if head.status != 200:
                return stored
            marker = Marker.of(head)
            etag = head.headers.get("ETag")
            length = content_length(head)
        if marker is None or length is None:
            return stored
        if not marker.multipart:
            return _single_stream_length(length, marker.segment_size)
        found = await self.probe_layout(target, [("If-Match", etag)] if etag else [])
        if isinstance(found, aiohttp.ClientResponse):
            found.release()
            return stored
        return found[0].plaintext_length


async def _chunks(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in resp.content.iter_chunked(READ_CHUNK):
        yield count_upstream(chunk)


def _checksum_mode(request: web.Request) -> bool:
    return request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"


def _single_stream_length(stored: int, segment_size: int) -> int:
    try:
        return plaintext_length(stored, segment_size)
    except ValueError as exc:
        raise IntegrityError(f"The stored object has an impossible size: {exc}.") from exc


def _client_range(value: str, total: int) -> tuple[int, int] | None:
    try:
        return parse_range(value, total)
    except RangeNotSatisfiable as exc:
        raise RangeError(total) from exc


def _pop_header(headers: Headers, name: str) -> str | None:
    value = get_header(headers, name)
    headers[:] = [(k, v) for k, v in headers if k.lower() != name.lower()]
    return value
