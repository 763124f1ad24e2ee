"""What is stored under a key: an object's stream layout, its streams' trailers and so its
plaintext size, ETag and checksum, found with small ranged reads and cached per upstream ETag.
See docs/design.md, Multipart objects, and docs/format.md."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Generic, TypeVar

import aiohttp

from s3proxy.core.errors import IntegrityError, PreconditionChanged
from s3proxy.core.etags import object_etag
from s3proxy.core.format import Header, Trailer, open_trailer, parse_header
from s3proxy.core.headers import HeaderPairs, content_length, content_range_total
from s3proxy.core.layout import (
    Discovery,
    Layout,
    PlanDecryptor,
    ReadPlan,
    check_name_binding,
    check_object_shape,
    discover,
)
from s3proxy.core.manifest import check_manifest, needs_manifest
from s3proxy.core.marker import Marker
from s3proxy.core.objectinfo import ObjectInfo, check_marker, object_checksum
from s3proxy.core.request import Target
from s3proxy.core.sizes import HEADER_SIZE, READ_CHUNK, TRAILER_SIZE
from s3proxy.core.unencrypted import UnencryptedPolicy
from s3proxy.keys.transit import KeyService
from s3proxy.store.tags import Tags
from s3proxy.telemetry import metrics
from s3proxy.telemetry.accesslog import count_upstream
from s3proxy.upstream import errors as upstream_errors
from s3proxy.upstream.client import Upstream

V = TypeVar("V")

# The cache of object layouts is bounded in bytes, an entry weighed by its streams (measured with
# tracemalloc: about 1,600 bytes for a single-stream object's info, 1,100 more per further
# stream), so a few objects of 10,000 parts cannot take more memory than many small ones. Every
# PutObject adds an entry: the bound is what keeps a busy writer's memory (and the garbage
# collector's work) flat; 16 MiB holds about 10,000 small objects or one of 10,000 parts.
INFO_CACHE_BYTES = 16 * 1024 * 1024
INFO_ENTRY = 1600
STREAM_ENTRY = 1100
FETCH_CONCURRENCY = 16
# The stored ETag last seen per (bucket, key, version), for reads that skip the probe, and the
# parts this process encrypted, kept for their CompleteMultipartUpload: both bounded in bytes
# (an entry's weight: its strings plus what Python needs around them, measured with
# tracemalloc at about 400 bytes for an ETag and 1,100 for a part).
LAST_ETAGS_BYTES = 4 * 1024 * 1024
OWN_PARTS_BYTES = 4 * 1024 * 1024
ETAG_ENTRY = 400
PART_ENTRY = 1200

CacheKey = tuple[str, str, str, str]  # bucket, key, version, ETag: an ETag names one content


class LruCache(Generic[V]):
    """An LRU map bounded by the total weight of its values (1 each unless ``weigh`` says)."""

    def __init__(
        self, limit: int, weigh: Callable[[V], int] = lambda _: 1, name: str = "other"
    ) -> None:
        self.name = name  # its label in the cache metrics
        self._limit = limit
        self._weigh = weigh
        self._weight = 0
        self._items: OrderedDict[CacheKey, tuple[V, int]] = OrderedDict()

    def get(self, key: CacheKey) -> V | None:
        found = self._items.get(key)
        metrics.cache_lookup(
            metrics.OBJECT_CACHE_HITS, metrics.OBJECT_CACHE_MISSES, self.name, found is not None
        )
        if found is None:
            return None
        self._items.move_to_end(key)
        return found[0]

    def peek(self, key: CacheKey) -> V | None:
        """The value, without counting a look-up or making it the most recent."""
        found = self._items.get(key)
        return None if found is None else found[0]

    def pop(self, key: CacheKey) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._weight -= old[1]

    def put(self, key: CacheKey, value: V, weight: int | None = None) -> None:
        """(``weight``: this entry's, instead of what ``weigh`` says.)"""
        weight = self._weigh(value) if weight is None else weight
        if weight > self._limit:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._weight -= old[1]
        self._items[key] = (value, weight)
        self._weight += weight
        while self._weight > self._limit:
            _, (_, dropped) = self._items.popitem(last=False)
            self._weight -= dropped


def _part_key(target: Target, number: str) -> CacheKey:
    return (target.bucket or "", target.key or "", target.param("uploadId") or "", number)


def _info_weight(info: ObjectInfo) -> int:
    return INFO_ENTRY + STREAM_ENTRY * (len(info.layout.streams) - 1)


def cache_key(target: Target, etag: str | None) -> CacheKey:
    return (target.bucket or "", target.key or "", target.param("versionId") or "", etag or "")


def last_modified(resp: aiohttp.ClientResponse) -> dt.datetime | None:
    value = resp.headers.get("Last-Modified")
    if value is None:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class NameRule:
    """Which streams may read without a name binding: any, unless the proxy binds names
    (S3PROXY_BIND_OBJECT_NAMES); then only those its migration allowance covers
    (S3PROXY_UNBOUND_*)."""

    bind_names: bool = False
    unbound: UnencryptedPolicy = field(default_factory=UnencryptedPolicy)

    def unbound_allowed(self, target: Target, modified: dt.datetime | None) -> bool:
        if not self.bind_names:
            return True
        return self.unbound.allows(target.bucket or "", target.key or "", modified)


class ObjectInspector:
    def __init__(self, keys: KeyService, upstream: Upstream, names: NameRule | None = None) -> None:
        self.keys = keys
        self.upstream = upstream
        self.names = names or NameRule()
        self.tags = Tags(upstream)
        self._infos: LruCache[ObjectInfo] = LruCache(INFO_CACHE_BYTES, _info_weight, "layout")
        self._last_etags: LruCache[str] = LruCache(LAST_ETAGS_BYTES, name="etag")
        self._parts: LruCache[tuple[str, Header, Trailer]] = LruCache(OWN_PARTS_BYTES, name="part")

    async def _fetch(self, target: Target, first: int, last: int, etag: str | None) -> bytes | None:
        """Stored bytes ``first..last`` of the object whose ETag is ``etag``; ``None`` if the
        upstream has no such range. (An upstream that ignores ``Range`` sends the whole object;
        the range is cut out of it.)"""
        headers: HeaderPairs = [("Range", f"bytes={first}-{last}")]
        if etag:
            headers.append(("If-Match", etag))
        resp = await self.upstream.send("GET", target, headers)
        async with resp:
            if resp.status == 412:
                raise PreconditionChanged("The object changed while s3proxy read it; retry.")
            if resp.status not in (200, 206):
                return None
            skip = first if resp.status == 200 else 0
            span = Span(resp, skip, last - first + 1)
            data = b"".join([chunk async for chunk in span.chunks()])
        return data if len(data) == last - first + 1 else None

    async def _layout(
        self,
        target: Target,
        etag: str | None,
        stored_total: int,
        first: Header,
        marker: Marker,
        sealed: dict[int, bytes],
    ) -> Layout:
        """The object's streams. A multipart object's headers are read with the bytes just
        before them: the sealed trailer of the stream that ends there, left in ``sealed`` by
        offset, so a part boundary costs one ranged read, not two."""
        if not marker.multipart:
            single = Layout.from_headers([first])
            if single.stored_length != stored_total:
                raise IntegrityError("The stored object's header does not match its size.")
            return single
        gate = asyncio.Semaphore(FETCH_CONCURRENCY)
        gen: Discovery = discover(stored_total, first)
        try:
            wanted = next(gen)
            while True:
                found = dict(
                    await asyncio.gather(
                        *(self._boundary(target, etag, o, gate, sealed) for o in wanted)
                    )
                )
                wanted = gen.send(found)
        except StopIteration as stop:
            layout: Layout = stop.value
        return layout

    async def _boundary(
        self,
        target: Target,
        etag: str | None,
        offset: int,
        gate: asyncio.Semaphore,
        sealed: dict[int, bytes],
    ) -> tuple[int, Header | None]:
        """The stream header at ``offset``, read with the sealed trailer just before it (left in
        ``sealed`` by its offset): one ranged read. ``None``: no valid header there."""
        before = TRAILER_SIZE if offset >= TRAILER_SIZE + HEADER_SIZE else 0
        async with gate:
            data = await self._fetch(target, offset - before, offset + HEADER_SIZE - 1, etag)
        if data is None:
            return offset, None
        if before:
            sealed[offset - before] = data[:before]
        try:
            return offset, parse_header(data[before:])
        except IntegrityError:
            return offset, None

    async def boundaries(
        self, target: Target, etag: str, offsets: list[int], sealed: dict[int, bytes]
    ) -> dict[int, Header | None]:
        """The stream headers at these offsets of the object whose stored ETag is ``etag``,
        each with the trailer before it (in ``sealed``): one ranged read per offset, in
        parallel (CompleteMultipartUpload's check of the parts' order)."""
        gate = asyncio.Semaphore(FETCH_CONCURRENCY)
        jobs = (self._boundary(target, etag, o, gate, sealed) for o in offsets)
        return dict(await asyncio.gather(*jobs))

    async def unwrap(self, wrapped: str, keys: dict[str, bytes] | None) -> bytes:
        """A stream's data key, remembered in ``keys`` (one request's keys) when given."""
        if keys is not None and wrapped in keys:
            return keys[wrapped]
        key = await self.keys.unwrap(wrapped)
        if keys is not None:
            keys[wrapped] = key
        return key

    async def trailers(
        self,
        target: Target,
        etag: str | None,
        layout: Layout,
        keys: dict[str, bytes] | None,
        sealed: dict[int, bytes],
        known: bytes = b"",
        given: Mapping[int, Trailer] | None = None,
    ) -> tuple[Trailer | None, ...]:
        """Every stream's trailer, authenticated: read where not already in ``sealed`` (by
        offset) or in ``known`` (the object's first bytes); ``given``: trailers already known
        by stream index (sealed by this process), neither read nor opened."""
        gate = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def one(index: int) -> Trailer | None:
            stream = layout.streams[index]
            offset = stream.trailer_offset
            if given is not None and index in given:
                return given[index]
            if offset is None:
                return None
            found: bytes | None = sealed.get(offset)
            if found is None and offset + TRAILER_SIZE <= len(known):
                found = known[offset : offset + TRAILER_SIZE]
            if found is None:
                async with gate:
                    found = await self._fetch(target, offset, offset + TRAILER_SIZE - 1, etag)
            if found is None:
                raise IntegrityError("The stored object's stream trailer could not be read.")
            key = await self.unwrap(stream.header.wrapped_key, keys)
            return open_trailer(key, stream.header, found)

        return tuple(await asyncio.gather(*(one(i) for i in range(len(layout.streams)))))

    def cached(
        self, target: Target, etag: str | None, stored_total: int | None, first: Header | None
    ) -> ObjectInfo | None:
        """The cached info of the object whose stored ETag is ``etag``, if its stored size
        (and first header, when given) are those of the cached layout."""
        if not etag:
            return None
        found = self._infos.get(cache_key(target, etag))
        if found is None:
            return None
        if stored_total is not None and found.layout.stored_length != stored_total:
            return None
        if first is not None and found.layout.streams[0].header != first:
            return None
        self._see(target, etag)
        return found

    def remember(self, target: Target, etag: str, info: ObjectInfo) -> None:
        """Cache ``info`` as the object whose stored ETag is ``etag``: a layout this process
        wrote itself or authenticated (docs/design.md, Reading without a probe)."""
        if not etag or info.etag is None:
            return
        self._infos.put(cache_key(target, etag), info)
        self._see(target, etag)

    def _see(self, target: Target, etag: str) -> None:
        """Note ``etag`` as the object's latest; the info of the content it replaced is
        dropped, so a key written again and again holds one entry, not one per write."""
        key = cache_key(target, None)
        previous = self._last_etags.peek(key)
        if previous is not None and previous != etag:
            self._infos.pop(cache_key(target, previous))
        self._last_etags.put(key, etag, ETAG_ENTRY + sum(map(len, key)) + len(etag))

    def last_seen(self, target: Target) -> tuple[str, ObjectInfo] | None:
        """The stored ETag this process last saw for the object and its cached info: a guess
        to be confirmed by the upstream (``If-Match``), never an answer by itself."""
        etag = self._last_etags.get(cache_key(target, None))
        if etag is None:
            return None
        info = self._infos.get(cache_key(target, etag))
        return None if info is None else (etag, info)

    def forget_last(self, target: Target) -> None:
        self._last_etags.pop(cache_key(target, None))

    def remember_part(
        self, target: Target, stored_etag: str, header: Header, trailer: Trailer
    ) -> None:
        """A part this process has just stored (UploadPart), for its CompleteMultipartUpload."""
        key = _part_key(target, target.param("partNumber") or "")
        weight = PART_ENTRY + sum(map(len, key)) + len(stored_etag) + len(header.wrapped_key)
        self._parts.put(key, (stored_etag, header, trailer), weight)

    def own_part(self, target: Target, number: int) -> tuple[str, Header, Trailer] | None:
        return self._parts.get(_part_key(target, str(number)))

    def forget_parts(self, target: Target, numbers: list[int]) -> None:
        for number in numbers:
            self._parts.pop(_part_key(target, str(number)))

    async def build(
        self,
        target: Target,
        etag: str | None,
        stored_total: int,
        first: Header,
        marker: Marker,
        keys: dict[str, bytes] | None = None,
        manifest: bool = True,
        known: bytes = b"",
        modified: dt.datetime | None = None,
    ) -> ObjectInfo:
        """The object's layout, trailers and plaintext ETag (parallel reads), cached per ETag;
        the caller looked in the cache already (:meth:`cached`). Data keys unwrapped on the way
        are left in ``keys`` for the rest of the request. ``manifest=False`` skips the manifest
        check (and the cache): for the object CompleteMultipartUpload has just made, whose
        manifest is yet to be written. ``known``: the object's first stored bytes, already read
        (no request for those). ``modified``: the object's Last-Modified, for the migration
        allowance of unbound streams (:class:`NameRule`). Every read path builds its info here
        or takes it from the cache, which holds only infos built here or written by this
        process: the name binding is checked on every read."""
        check_marker(first, marker)
        sealed: dict[int, bytes] = {}
        layout = await self._layout(target, etag, stored_total, first, marker, sealed)
        check_object_shape(layout, marker.multipart)
        unbound_allowed = self.names.unbound_allowed(target, modified)
        check_name_binding(layout, target.bucket or "", target.key or "", unbound_allowed)
        if marker.multipart and needs_manifest(layout) and manifest:
            first_key = await self.unwrap(layout.streams[0].header.wrapped_key, keys)
            check_manifest(first_key, layout, await self.tags.manifest(target))
        trailers = await self.trailers(target, etag, layout, keys, sealed, known)
        md5s = [t.md5 if t is not None else None for t in trailers]
        plain_etag = object_etag(md5s, marker.multipart)
        info = ObjectInfo(layout, trailers, plain_etag, object_checksum(layout, trailers, marker))
        if etag and manifest:
            self.remember(target, etag, info)
        return info

    @asynccontextmanager
    async def first_bytes(
        self, target: Target, headers: HeaderPairs, length: int = HEADER_SIZE
    ) -> AsyncIterator[FirstBytes]:
        """GET the first ``length`` bytes (at least the header) of the object. Ours: its
        marker, stored size and the bytes read (fewer than ``length`` only where the object
        is shorter), the response already released. Not ours (or no object): the response,
        unread, to relay or retry. Released when the block ends."""
        probe = await self.upstream.send(
            "GET", target, [*headers, ("Range", f"bytes=0-{max(length, HEADER_SIZE) - 1}")]
        )
        async with probe:
            # A 200 is an upstream that ignored the Range: the body is still the stored object.
            marker = Marker.of(probe.headers) if probe.status in (200, 206) else None
            if marker is None:
                yield FirstBytes(probe)
                return
            if probe.status == 206:
                stored_total = content_range_total(probe.headers)
            else:
                stored_total = content_length(probe.headers)
            if stored_total is None:
                raise IntegrityError("The upstream did not report the stored object's size.")
            if stored_total < HEADER_SIZE:
                raise IntegrityError("The stored object is shorter than its header.")
            wanted = max(HEADER_SIZE, min(length, stored_total))
            with upstream_errors.reading():
                data = count_upstream(await probe.content.readexactly(wanted))
            probe.release()  # (the reads that follow need no part of it)
            yield FirstBytes(probe, marker, stored_total, data)

    @asynccontextmanager
    async def probing(
        self,
        target: Target,
        headers: HeaderPairs,
        keys: dict[str, bytes] | None = None,
        manifest: bool = True,
        length: int = HEADER_SIZE,
    ) -> AsyncIterator[Probe]:
        """GET the first 256 bytes (or ``length``: a small object whole, trailer included).
        Ours: the object's info (cached, or built now) and the released probe response. Not
        ours: the probe response, unread, to relay or retry. Released when the block ends."""
        async with self.first_bytes(target, headers, length) as found:
            if found.marker is None:
                yield Probe(found.resp)
                return
            probe, marker, data = found.resp, found.marker, found.data
            first = parse_header(data[:HEADER_SIZE])
            stored_etag = probe.headers.get("ETag")
            check_marker(first, marker)
            info = self.cached(target, stored_etag, found.stored_total, first) if manifest else None
            if info is None:
                info = await self.build(
                    target,
                    stored_etag,
                    found.stored_total,
                    first,
                    marker,
                    keys,
                    manifest,
                    known=data,
                    modified=last_modified(probe),
                )
            yield Probe(probe, info)

    async def current(self, target: Target, manifest: bool = True) -> Current | None:
        """What a client would see of the object now: its stored ETag, and the plaintext ETag
        and info if the proxy wrote it; ``None`` if there is no such object."""
        async with self.probing(target, [], manifest=manifest) as probe:
            stored = probe.resp.headers.get("ETag", "")
            if probe.info is not None:
                marker = Marker.of(probe.resp.headers)
                return Current(target, stored, probe.info.etag or stored, probe.info, marker)
            if probe.resp.status not in (200, 206, 416):
                return None
            return Current(target, stored, stored, None, None)

    async def fetch_span(
        self, target: Target, headers: HeaderPairs, stored_etag: str | None, plan: ReadPlan
    ) -> Span:
        """GET exactly the stored bytes ``plan`` needs, from the object whose stored ETag is
        ``stored_etag`` (the caller releases ``Span.resp``). An upstream that ignores ``Range``
        sends the whole object; the span is then cut out of it."""
        span_headers = [(k, v) for k, v in headers if not k.lower().startswith("if-")]
        if stored_etag:
            span_headers.append(("If-Match", stored_etag))
        span_headers.append(("Range", f"bytes={plan.stored_first}-{plan.stored_last}"))
        resp = await self.upstream.send("GET", target, span_headers)
        length = plan.stored_last - plan.stored_first + 1
        if resp.status == 206:
            return Span(resp, 0, length)
        if resp.status == 200:
            return Span(resp, plan.stored_first, length)
        resp.release()
        if resp.status == 412:
            raise PreconditionChanged("The object changed while s3proxy read it; retry.")
        raise IntegrityError("The upstream did not return the requested ciphertext range.")

    async def known_span(
        self,
        target: Target,
        headers: HeaderPairs,
        stored_etag: str,
        info: ObjectInfo,
        plan: ReadPlan,
    ) -> Span | None:
        """GET the stored bytes of ``plan`` (a plan on the cached ``info``) ``If-Match`` the
        stored ETag the info was cached under, without a probe first. ``None`` (nothing kept
        open) unless the upstream answers with exactly that object: the caller then probes.
        The caller releases ``Span.resp``."""
        span_headers = [(k, v) for k, v in headers if not k.lower().startswith("if-")]
        span_headers.append(("If-Match", stored_etag))
        span_headers.append(("Range", f"bytes={plan.stored_first}-{plan.stored_last}"))
        resp = await self.upstream.send("GET", target, span_headers)
        length = plan.stored_last - plan.stored_first + 1
        try:
            ours = Marker.of(resp.headers) if resp.status in (200, 206) else None
        except IntegrityError:
            ours = None
        if ours is not None and resp.headers.get("ETag") == stored_etag:
            stored_total = (
                content_range_total(resp.headers)
                if resp.status == 206
                else content_length(resp.headers)
            )
            first = info.layout.streams[0].header
            same = first.version == ours.version and first.segment_size == ours.segment_size
            if same and stored_total == info.layout.stored_length:
                return Span(resp, 0 if resp.status == 206 else plan.stored_first, length)
        resp.release()
        self.forget_last(target)
        return None

    async def plaintext(
        self, target: Target, stored_etag: str, plan: ReadPlan
    ) -> AsyncIterator[bytes]:
        """The authenticated plaintext of ``plan``, read from the object with ``stored_etag``."""
        span = await self.fetch_span(target, [], stored_etag, plan)
        async with span.resp:
            decryptor = PlanDecryptor(plan)
            keys: dict[str, bytes] = {}
            with upstream_errors.reading():
                async for chunk in span.chunks():
                    out = [decryptor.feed(chunk)]
                    while decryptor.needs_key is not None:
                        wrapped = decryptor.needs_key.wrapped_key
                        decryptor.provide_key(await self.unwrap(wrapped, keys))
                        out.append(decryptor.feed(b""))
                    data = b"".join(out)
                    if data:
                        yield data
            decryptor.finish()


@dataclass(frozen=True)
class Span:
    """A fetched stored range: ``length`` bytes after the first ``skip`` of the response."""

    resp: aiohttp.ClientResponse
    skip: int
    length: int

    async def chunks(self) -> AsyncIterator[bytes]:
        skip, left = self.skip, self.length
        async for chunk in self.resp.content.iter_chunked(READ_CHUNK):
            count_upstream(chunk)
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            if skip or len(chunk) - skip > left:
                chunk = chunk[skip : skip + left]
                skip = 0
            left -= len(chunk)
            yield chunk
            if not left:
                return


@dataclass(frozen=True)
class Current:
    target: Target
    stored_etag: str
    etag: str  # as the client sees it: the plaintext ETag of an object the proxy wrote
    info: ObjectInfo | None  # None: not written by the proxy
    marker: Marker | None


@dataclass(frozen=True)
class FirstBytes:
    """What the first stored bytes of an object showed (:meth:`ObjectInspector.first_bytes`).
    ``marker`` None: not an object the proxy wrote, or no object: ``resp`` is the store's
    answer, unread."""

    resp: aiohttp.ClientResponse
    marker: Marker | None = None
    stored_total: int = 0
    data: bytes = b""


@dataclass(frozen=True)
class Probe:
    """What a probe found (:meth:`ObjectInspector.probing`): the object's info if the proxy
    wrote it (``resp`` released, its headers still readable), else ``info`` None and the
    store's answer in ``resp``, unread."""

    resp: aiohttp.ClientResponse
    info: ObjectInfo | None = None
