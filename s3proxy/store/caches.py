"""What this process knows of stored objects, bounded in bytes: the authenticated infos of
objects by stored ETag, the stored ETag last seen per key (for reads that skip the probe), and
the parts it encrypted (for their CompleteMultipartUpload). See docs/design.md, Reading without
a probe."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from s3proxy.core.format import Header, Trailer
from s3proxy.core.objectinfo import ObjectInfo
from s3proxy.core.request import Target
from s3proxy.telemetry import metrics

V = TypeVar("V")

# The cache of object layouts is bounded in bytes, an entry weighed by its streams (measured with
# tracemalloc: about 1,600 bytes for a single-stream object's info, 1,100 more per further
# stream), so a few objects of 10,000 parts cannot take more memory than many small ones. Every
# PutObject adds an entry: the bound is what keeps a busy writer's memory (and the garbage
# collector's work) flat; 16 MiB holds about 10,000 small objects or one of 10,000 parts.
INFO_CACHE_BYTES = 16 * 1024 * 1024
INFO_ENTRY = 1600
STREAM_ENTRY = 1100
# The stored ETag last seen per (bucket, key, version), for reads that skip the probe, and the
# parts this process encrypted, kept for their CompleteMultipartUpload: both bounded in bytes
# (an entry's weight: its strings plus what Python needs around them, measured with
# tracemalloc at about 400 bytes for an ETag and 1,100 for a part).
LAST_ETAGS_BYTES = 4 * 1024 * 1024
OWN_PARTS_BYTES = 4 * 1024 * 1024
ETAG_ENTRY = 400
PART_ENTRY = 1200

CacheKey = tuple[str, str, str, str]  # bucket, key, version, ETag: an ETag names one content
# An object's info, or what builds it when it is first looked up (a write's: most writes are
# never read back by the process that made them, and building the info costs more than the rest
# of remembering it).
InfoSource = ObjectInfo | Callable[[], ObjectInfo]


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

    def get(self, key: CacheKey, *, counted: bool = True) -> V | None:
        """(``counted`` False: the caller counts the look-up in the metrics, with others.)"""
        found = self._items.get(key)
        if counted:
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


def _info_weight(info: InfoSource) -> int:
    if not isinstance(info, ObjectInfo):
        return INFO_ENTRY  # (a stream's, built when looked up)
    return INFO_ENTRY + STREAM_ENTRY * (len(info.layout.streams) - 1)


def cache_key(target: Target, etag: str | None) -> CacheKey:
    return (target.bucket or "", target.key or "", target.param("versionId") or "", etag or "")


class KnownObjects:
    """The per-process caches of :class:`~s3proxy.store.objects.ObjectInspector`."""

    def __init__(self) -> None:
        self._infos: LruCache[InfoSource] = LruCache(INFO_CACHE_BYTES, _info_weight, "layout")
        self._last_etags: LruCache[str] = LruCache(LAST_ETAGS_BYTES, name="etag")
        self._parts: LruCache[tuple[str, Header, Trailer, bytes | None]] = LruCache(
            OWN_PARTS_BYTES, name="part"
        )

    def cached(
        self,
        target: Target,
        etag: str | None,
        stored_total: int | None,
        first: Header | None,
        *,
        counted: bool = True,
    ) -> ObjectInfo | None:
        """The cached info of the object whose stored ETag is ``etag``, if its stored size
        (and first header, when given) are those of the cached layout."""
        if not etag:
            return None
        found = self._info(cache_key(target, etag), counted)
        if found is None:
            return None
        if stored_total is not None and found.layout.stored_length != stored_total:
            return None
        if first is not None and found.layout.streams[0].header != first:
            return None
        self._see(target, etag)
        return found

    def remember(self, target: Target, etag: str, info: InfoSource) -> None:
        """Cache ``info`` (or what builds it) as the object whose stored ETag is ``etag``: a
        layout this process wrote itself or authenticated (docs/design.md, Reading without a
        probe)."""
        if not etag or (isinstance(info, ObjectInfo) and info.etag is None):
            return
        self._infos.put(cache_key(target, etag), info)
        self._see(target, etag)

    def _info(self, key: CacheKey, counted: bool = True) -> ObjectInfo | None:
        """The info cached under ``key``, built now if it was remembered unbuilt."""
        found = self._infos.get(key, counted=counted)
        if found is None or isinstance(found, ObjectInfo):
            return found
        built = found()
        self._infos.put(key, built)
        return built

    def saw(self, target: Target, etag: str | None) -> None:
        """Note that the object now has the stored ETag ``etag`` (a HEAD answered from its
        footer, which is not cached): the info of the content it replaced is dropped."""
        if etag:
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
        info = self._info(cache_key(target, etag))
        return None if info is None else (etag, info)

    def forget_last(self, target: Target) -> None:
        self._last_etags.pop(cache_key(target, None))

    def remember_part(
        self,
        target: Target,
        stored_etag: str,
        header: Header,
        trailer: Trailer,
        footer: bytes | None = None,
    ) -> None:
        """A part this process has just stored (UploadPart), for its CompleteMultipartUpload:
        its stored ETag, header, trailer and (v3) footer."""
        key = _part_key(target, target.param("partNumber") or "")
        weight = PART_ENTRY + sum(map(len, key)) + len(stored_etag) + len(header.wrapped_key)
        weight += len(footer or b"")
        self._parts.put(key, (stored_etag, header, trailer, footer), weight)

    def own_part(
        self, target: Target, number: int
    ) -> tuple[str, Header, Trailer, bytes | None] | None:
        return self._parts.get(_part_key(target, str(number)))

    def forget_parts(self, target: Target, numbers: list[int]) -> None:
        for number in numbers:
            self._parts.pop(_part_key(target, str(number)))
