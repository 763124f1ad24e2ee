"""Listings through the proxy: ListObjects, ListObjectsV2 and ListObjectVersions report each
encrypted object's plaintext size and ETag (read from its header and trailers, cached by ETag;
``S3PROXY_LIST_SIZES=stored`` keeps the stored values), and ListParts reports part sizes as this
proxy's segment size gives them (docs/design.md)."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import unquote_plus

from aiohttp import web

from s3proxy.config import Config
from s3proxy.core.errors import IntegrityError, S3ProxyError
from s3proxy.core.format import PART_VERSION
from s3proxy.core.headers import upstream_request_headers
from s3proxy.core.objectinfo import ObjectInfo
from s3proxy.core.request import Target
from s3proxy.core.s3xml import ListedObject, listed_objects, rewrite_listing, rewrite_part_sizes
from s3proxy.core.sizes import HEADER_SIZE, TAG_SIZE, plaintext_length
from s3proxy.server.relay import relay, relay_body
from s3proxy.store.caches import LruCache, cache_key
from s3proxy.store.ends import EndReader
from s3proxy.store.objects import ObjectInspector
from s3proxy.store.sharedfacts import identity
from s3proxy.store.wholefacts import WholeFacts, settle
from s3proxy.telemetry import metrics
from s3proxy.telemetry.accesslog import count_upstream
from s3proxy.upstream.client import Upstream
from s3proxy.upstream.httperrors import UpstreamError

log = logging.getLogger("s3proxy")

LIST_CACHE_ENTRIES = 65536
LIST_PROBE_CONCURRENCY = 32


class Listings:
    def __init__(self, config: Config, upstream: Upstream, objects: ObjectInspector) -> None:
        self.config = config
        self.upstream = upstream
        self.objects = objects
        self.ends = EndReader(objects)
        self._listed: LruCache[tuple[int, str | None]] = LruCache(LIST_CACHE_ENTRIES, name="size")

    # ---- ListParts ---------------------------------------------------------------------------

    async def list_parts(self, request: web.Request, target: Target) -> web.StreamResponse:
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        upstream_resp = await self.upstream.send("GET", target, headers)
        async with upstream_resp:
            if upstream_resp.status != 200:
                return await relay(request, upstream_resp)
            seg = self.config.segment_size
            body = rewrite_part_sizes(
                await upstream_resp.read(),
                lambda n: _stream_length(n, seg, PART_VERSION),
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
        found = await self._plaintexts(target.bucket or "", objects, url_encoded)
        return relay_body(upstream_resp, rewrite_listing(body, found, objects))

    async def _plaintexts(
        self, bucket: str, objects: list[ListedObject], url_encoded: bool
    ) -> list[tuple[int, str | None]]:
        """The plaintext size and ETag of each listed object (``None``: keep the listed ETag),
        for this page only: what this process knows, then the shared cache (one round trip for
        the page), then a look-up per object left, concurrently and bounded; what was looked up
        is written through to the shared cache (docs/metadata.md, Listings)."""
        found: list[tuple[int, str | None] | None] = []
        targets = []
        lookups = _Lookups()
        for obj in objects:
            target = _listed_target(bucket, obj, url_encoded)
            targets.append(target)
            found.append(self._known(target, obj, lookups))
        lookups.report()
        left = [i for i, known in enumerate(found) if known is None]
        shared = self.objects.shared
        names = [identity(targets[i], objects[i].etag, objects[i].size) for i in left]
        for i, summary in zip(left, await shared.find_many(names), strict=True):
            if summary is not None:
                found[i] = self._keep(targets[i], objects[i], summary.size, summary.etag)
        left = [i for i in left if found[i] is None]
        gate = asyncio.Semaphore(LIST_PROBE_CONCURRENCY)

        async def look_up(i: int) -> ObjectInfo | NotOurs | None:
            async with gate:
                return await self._looked_up(targets[i], objects[i])

        infos = await asyncio.gather(*(look_up(i) for i in left))
        learnt = []
        for i, info in zip(left, infos, strict=True):
            obj = objects[i]
            if info is None:  # the look-up failed: reported as stored, not kept
                found[i] = (obj.size, None)
            elif isinstance(info, NotOurs):
                found[i] = self._keep(targets[i], obj, obj.size, None)
            else:
                found[i] = self._keep(targets[i], obj, info.size, info.etag)
                learnt.append((identity(targets[i], obj.etag, obj.size), info.summary))
        await shared.publish_many(learnt)
        return [known or (0, None) for known in found]

    def _known(
        self, target: Target, obj: ListedObject, lookups: _Lookups
    ) -> tuple[int, str | None] | None:
        """What this process knows of a listed object without a request: the stored values of
        one too small to be the proxy's; else the plaintext size and ETag listed or read before
        under the listed ETag and size. None: not known here."""
        if obj.size < HEADER_SIZE + TAG_SIZE:
            return obj.size, None  # too small to be an encrypted stream
        cached = self._listed.get(cache_key(target, obj.etag), counted=False)
        lookups.sizes[cached is None] += 1
        if cached is not None:
            return cached
        known = self.objects.cached(target, obj.etag, obj.size, None, counted=False)
        lookups.layouts[known is None] += 1
        if known is not None:  # a layout this process wrote or read: no request
            return self._keep(target, obj, known.size, known.etag)
        return None

    def _keep(
        self, target: Target, obj: ListedObject, size: int, etag: str | None
    ) -> tuple[int, str | None]:
        self._listed.put(cache_key(target, obj.etag), (size, etag))
        return size, etag

    async def _looked_up(self, target: Target, obj: ListedObject) -> ObjectInfo | NotOurs | None:
        """A listed object's info from its end (one request for a v3 single-stream object;
        more for older formats and multipart objects); None: a failed look-up (the listing then
        reports the stored values rather than failing)."""
        same = [("If-Match", obj.etag)] if obj.etag else []
        ends = self.ends
        # A listed ETag that shows a multipart object: its manifest tag is asked for with its
        # end, so a v3 multipart object costs one round trip (docs/metadata.md).
        tag = WholeFacts(self.objects).tag_ahead(target, obj.etag)
        try:
            async with ends.end_bytes(target, same) as found:
                if found.marker is None:
                    return NotOurs()
                return await ends.looked_up_at_end(
                    target, found.resp, found.marker, found.stored_total, found.end, tag
                )
        except (S3ProxyError, UpstreamError) as exc:
            log.warning(
                "listing reports the stored size of %s/%s: %s", target.bucket, target.key, exc
            )
            return None
        finally:
            if tag is not None:
                settle(tag)


class _Lookups:
    """A page's look-ups in this process's caches, counted in the metrics at once (a page has
    a thousand): [found, not found] of each."""

    def __init__(self) -> None:
        self.sizes = [0, 0]
        self.layouts = [0, 0]

    def report(self) -> None:
        for cache, (hit, missed) in (("size", self.sizes), ("layout", self.layouts)):
            metrics.cache_lookups(
                metrics.OBJECT_CACHE_HITS, metrics.OBJECT_CACHE_MISSES, cache, hit, missed
            )


class NotOurs:
    """A listed object the proxy did not write (or none at all now): listed as stored."""


def _listed_target(bucket: str, obj: ListedObject, url_encoded: bool) -> Target:
    key = obj.key
    if url_encoded and ("%" in key or "+" in key):  # (else it reads as it is)
        key = unquote_plus(key)
    query = (("versionId", obj.version_id),) if obj.version_id else ()
    return Target(bucket, key, query)


def _stream_length(stored: int, segment_size: int, version: int) -> int:
    """A part's plaintext size from its stored size: as ``version`` writes parts, or (a part
    an older proxy stored during an upgrade, of a size ``version`` cannot have) as v2 did."""
    try:
        return plaintext_length(stored, segment_size, version)
    except ValueError as exc:
        if version > 2:
            return _stream_length(stored, segment_size, 2)
        raise IntegrityError(f"The stored object has an impossible size: {exc}.") from exc
