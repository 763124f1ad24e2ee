"""Listings through the proxy: ListObjects, ListObjectsV2 and ListObjectVersions report each
encrypted object's plaintext size and ETag (read from its header and trailers, cached by ETag;
``S3PROXY_LIST_SIZES=stored`` keeps the stored values), and ListParts reports part sizes as this
proxy's segment size gives them (docs/design.md)."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import unquote_plus

import aiohttp
from aiohttp import web

from s3proxy.config import Config
from s3proxy.core.errors import IntegrityError, S3ProxyError
from s3proxy.core.format import PART_VERSION
from s3proxy.core.headers import HeaderPairs, upstream_request_headers
from s3proxy.core.objectinfo import ObjectInfo
from s3proxy.core.request import Target
from s3proxy.core.s3xml import ListedObject, listed_objects, rewrite_listing, rewrite_part_sizes
from s3proxy.core.sizes import HEADER_SIZE, TAG_SIZE, plaintext_length
from s3proxy.server.relay import relay, relay_body
from s3proxy.store.caches import LruCache, cache_key
from s3proxy.store.ends import EndReader
from s3proxy.store.objects import ObjectInspector
from s3proxy.telemetry.accesslog import count_upstream
from s3proxy.upstream.client import Upstream

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
        gate = asyncio.Semaphore(LIST_PROBE_CONCURRENCY)

        async def plaintext_of(obj: ListedObject) -> tuple[int, str | None]:
            async with gate:
                return await self._listed_plaintext(target.bucket or "", obj, url_encoded)

        found = await asyncio.gather(*(plaintext_of(o) for o in objects))
        return relay_body(upstream_resp, rewrite_listing(body, list(found)))

    async def _listed_plaintext(
        self, bucket: str, obj: ListedObject, url_encoded: bool
    ) -> tuple[int, str | None]:
        """The plaintext size and ETag of a listed object (``None``: keep the listed ETag):
        stored values for objects not written by the proxy; else from the layout this process
        holds under the listed ETag and size, or from its first 256 bytes and its streams'
        trailers. Cached by ETag. A failed look-up reports the stored values rather
        than failing the listing."""
        if obj.size < HEADER_SIZE + TAG_SIZE:
            return obj.size, None  # too small to be an encrypted stream
        key = unquote_plus(obj.key) if url_encoded else obj.key
        query = (("versionId", obj.version_id),) if obj.version_id else ()
        target = Target(bucket, key, query)
        ck = cache_key(target, obj.etag)
        cached = self._listed.get(ck)
        if cached is not None:
            return cached
        known = self.objects.cached(target, obj.etag, obj.size, None)
        if known is not None:  # a layout this process wrote or read: no request
            self._listed.put(ck, (known.size, known.etag))
            return known.size, known.etag
        same = [("If-Match", obj.etag)] if obj.etag else []
        try:
            info = await self._looked_up(target, same)
        except (S3ProxyError, aiohttp.ClientError) as exc:
            log.warning("listing reports the stored size of %s/%s: %s", bucket, key, exc)
            return obj.size, None
        result = (obj.size, None) if info is None else (info.size, info.etag)
        self._listed.put(ck, result)
        return result

    async def _looked_up(self, target: Target, same: HeaderPairs) -> ObjectInfo | None:
        """A listed object's info from its end (one request for a v3 single-stream object;
        more for older formats and multipart objects); None: not the proxy's."""
        ends = self.ends
        async with ends.end_bytes(target, same) as found:
            if found.marker is None:
                return None
            return await ends.info_at_end(
                target, found.resp, found.marker, found.stored_total, found.end
            )


def _stream_length(stored: int, segment_size: int, version: int) -> int:
    try:
        return plaintext_length(stored, segment_size, version)
    except ValueError as exc:
        raise IntegrityError(f"The stored object has an impossible size: {exc}.") from exc
