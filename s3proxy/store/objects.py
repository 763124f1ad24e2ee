"""What is stored under a key: an object's stream layout, its streams' trailers and so its
plaintext size, ETag and checksum, found with small ranged reads and cached per upstream ETag.
See docs/design.md, Multipart objects, and docs/format.md."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from s3proxy.core.errors import IntegrityError
from s3proxy.core.etags import object_etag
from s3proxy.core.footer import Footer, footer_key_version, open_footer
from s3proxy.core.format import Header, Trailer, open_trailer, parse_header
from s3proxy.core.headers import HeaderPairs, content_length, content_range_total
from s3proxy.core.layout import (
    Layout,
    PlanDecryptor,
    ReadPlan,
    check_name_binding,
    check_object_shape,
)
from s3proxy.core.manifest import needs_manifest
from s3proxy.core.marker import Marker
from s3proxy.core.objectinfo import ObjectInfo, check_marker, object_checksum
from s3proxy.core.request import Target
from s3proxy.core.sizes import HEADER_SIZE, READ_CHUNK
from s3proxy.core.unencrypted import UnencryptedPolicy
from s3proxy.keys.transit import KeyService
from s3proxy.store.caches import KnownObjects
from s3proxy.store.manifests import Manifests
from s3proxy.store.ranged import FETCH_CONCURRENCY, RangedReads
from s3proxy.store.sharedfacts import SharedFacts
from s3proxy.store.spans import fetch_span
from s3proxy.store.tags import Tags
from s3proxy.telemetry.accesslog import count_upstream
from s3proxy.upstream import errors as upstream_errors
from s3proxy.upstream.client import Upstream
from s3proxy.upstream.response import Response

# A single stream up to this stored size whose layout is not cached is read whole (a plain GET
# before answering, a HEAD's look-up): its trailer is at the end; one read chunk, as much as a
# streamed read holds anyway.
WHOLE_READ_LIMIT = READ_CHUNK


def last_modified(resp: Response) -> dt.datetime | None:
    value = resp.headers.get("Last-Modified")
    return None if value is None else _http_date(value)


@functools.lru_cache(maxsize=1024)
def _http_date(value: str) -> dt.datetime | None:
    """A Last-Modified value, parsed once for the many responses that carry it."""
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


class ObjectInspector(KnownObjects):
    """What is stored under a key: found with small ranged reads of the object (probes,
    layouts, trailers), authenticated, and kept in this process's caches (:class:`KnownObjects`)."""

    def __init__(
        self,
        keys: KeyService,
        upstream: Upstream,
        names: NameRule | None = None,
        shared: SharedFacts | None = None,
    ) -> None:
        self.keys = keys
        self.upstream = upstream
        self.names = names or NameRule()
        self.shared = shared or SharedFacts(None, keys)  # the proxies' shared cache, if any
        self.tags = Tags(upstream)
        self.manifests = Manifests(keys, self.tags, self.unwrap)
        self.reads = RangedReads(upstream)
        super().__init__()

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
        footers: dict[int, bytes] | None = None,
        end: bytes = b"",
    ) -> tuple[Trailer | None, ...]:
        """Every stream's trailer, authenticated: read where not already in ``sealed`` (by
        offset) or in ``known`` (the object's first bytes); ``given``: trailers already known
        by stream index (sealed by this process), neither read nor opened; ``end``: the object's
        last bytes, already read. A v3 stream's footer stands for its trailer; the footers
        opened are left in ``footers`` by stream index."""
        gate = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def one(index: int) -> Trailer | None:
            stream = layout.streams[index]
            offset, size = stream.end_offset, stream.header.end_size
            if given is not None and index in given:
                return given[index]
            if offset is None:
                return None
            found: bytes | None = sealed.get(offset)
            if found is None and offset + size <= len(known):
                found = known[offset : offset + size]
            tail_at = layout.stored_length - len(end)
            if found is None and end and offset >= tail_at:
                found = end[offset - tail_at : offset - tail_at + size]
            if found is None:
                async with gate:
                    found = await self.reads.fetch(target, offset, offset + size - 1, etag)
            if found is None:
                raise IntegrityError("The stored object's stream trailer could not be read.")
            if stream.header.has_footer:
                footer = await self.open_footer(found, stream.header)
                if footers is not None:
                    footers[index] = found
                return footer.trailer
            key = await self.unwrap(stream.header.wrapped_key, keys)
            return open_trailer(key, stream.header, found)

        return tuple(await asyncio.gather(*(one(i) for i in range(len(layout.streams)))))

    async def open_footer(self, found: bytes, header: Header | None = None) -> Footer:
        """A v3 footer, opened with the metadata key it names (one Vault call per key version
        per process) and, with ``header``, checked to be that stream's."""
        metadata_key = await self.keys.metadata_key(footer_key_version(found))
        return open_footer(metadata_key, found, header)

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
        end: bytes = b"",
    ) -> ObjectInfo:
        """The object's layout, trailers and plaintext ETag (parallel reads), cached per ETag;
        the caller looked in the cache already (:meth:`cached`). Data keys unwrapped on the way
        are left in ``keys`` for the rest of the request. ``manifest=False`` skips the manifest
        check (and the cache): for the object CompleteMultipartUpload has just made, whose
        manifest is yet to be written. ``known``: the object's first stored bytes, already read
        (no request for those); ``end``: its last stored bytes, already read (the same).
        ``modified``: the object's Last-Modified, for the migration
        allowance of unbound streams (:class:`NameRule`). Every read path builds its info here
        or takes it from the cache, which holds only infos built here or written by this
        process: the name binding is checked on every read."""
        check_marker(first, marker)
        sealed: dict[int, bytes] = {}
        layout = await self.reads.layout(target, etag, stored_total, first, marker, sealed)
        check_object_shape(layout, marker.multipart)
        unbound_allowed = self.names.unbound_allowed(target, modified)
        check_name_binding(layout, target.bucket or "", target.key or "", unbound_allowed)
        facts = None
        if marker.multipart and needs_manifest(layout) and manifest:
            facts = await self.manifests.check(target, layout, keys)
        footers: dict[int, bytes] = {}
        trailers = await self.trailers(
            target, etag, layout, keys, sealed, known, None, footers, end
        )
        layout = layout.with_footers(footers)
        md5s = [t.md5 if t is not None else None for t in trailers]
        plain_etag = object_etag(md5s, marker.multipart)
        if facts is not None and facts.etag != plain_etag:
            raise IntegrityError("The multipart object's parts do not match its manifest.")
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
        end: bytes = b"",
    ) -> AsyncIterator[Probe]:
        """GET the first 256 bytes (or ``length``: a small object whole, trailer included).
        Ours: the object's info (cached, or built now) and the released probe response. Not
        ours: the probe response, unread, to relay or retry. Released when the block ends."""
        async with self.first_bytes(target, headers, length) as found:
            if found.marker is None:
                yield Probe(found.resp)
                return
            yield Probe(found.resp, await self.info_of(target, found, keys, manifest, end))

    async def info_of(
        self,
        target: Target,
        found: FirstBytes,
        keys: dict[str, bytes] | None = None,
        manifest: bool = True,
        end: bytes = b"",
    ) -> ObjectInfo:
        """The info of the object whose first bytes ``found`` read (its marker shown): cached,
        or built now from what was read (and from ``end``, its last bytes, if read too)."""
        assert found.marker is not None
        first = parse_header(found.data[:HEADER_SIZE])
        stored_etag = found.resp.headers.get("ETag")
        check_marker(first, found.marker)
        info = self.cached(target, stored_etag, found.stored_total, first) if manifest else None
        if info is None:
            info = await self.build(
                target,
                stored_etag,
                found.stored_total,
                first,
                found.marker,
                keys,
                manifest,
                known=found.data,
                modified=last_modified(found.resp),
                end=end,
            )
        return info

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

    async def plaintext(
        self, target: Target, stored_etag: str, plan: ReadPlan
    ) -> AsyncIterator[bytes]:
        """The authenticated plaintext of ``plan``, read from the object with ``stored_etag``."""
        span = await fetch_span(self.upstream, target, [], stored_etag, plan)
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

    resp: Response
    marker: Marker | None = None
    stored_total: int = 0
    data: bytes = b""


@dataclass(frozen=True)
class Probe:
    """What a probe found (:meth:`ObjectInspector.probing`): the object's info if the proxy
    wrote it (``resp`` released, its headers still readable), else ``info`` None and the
    store's answer in ``resp``, unread."""

    resp: Response
    info: ObjectInfo | None = None
