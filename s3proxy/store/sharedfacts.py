"""What the proxies of a transit key share about objects (docs/metadata.md, Shared cache): the
summaries HEADs and listings answer, sealed into the shared cache (s3proxy.store.sharedcache)
under names and keys derived from the metadata key. Without a cache configured every look-up
misses and every write is skipped, without a Vault call or any other work."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from s3proxy.core.cacheentry import (
    ObjectIdentity,
    cache_name,
    entry_key_version,
    facts_of,
    open_entry,
    seal_entry,
    summary_of,
)
from s3proxy.core.errors import S3ProxyError
from s3proxy.core.footer import MetadataKey
from s3proxy.core.objectinfo import ObjectSummary
from s3proxy.core.request import Target
from s3proxy.keys.transit import KeyService

if TYPE_CHECKING:  # (redis is imported only where a shared cache is configured)
    from s3proxy.store.sharedcache import SharedCache

log = logging.getLogger("s3proxy.store.sharedfacts")


def identity(target: Target, stored_etag: str | None, stored_size: int) -> ObjectIdentity:
    """The identity an entry is bound to. The version is left empty: a listing without versions
    cannot know it, and the stored ETag and size already name the stored content (its
    ciphertext, unique to one write)."""
    return ObjectIdentity(target.bucket or "", target.key or "", "", stored_etag or "", stored_size)


class SharedFacts:
    """Look-ups and write-through of object summaries in the shared cache."""

    def __init__(self, cache: SharedCache | None, keys: KeyService) -> None:
        self._cache = cache
        self._keys = keys

    @property
    def enabled(self) -> bool:
        return self._cache is not None and self._cache.enabled

    async def find_many(self, objects: Sequence[ObjectIdentity]) -> list[ObjectSummary | None]:
        """The summaries the cache holds for ``objects`` (None where it holds none that opens
        for exactly that object): one round trip however many."""
        if not objects or self._cache is None or not self.enabled:
            return [None] * len(objects)
        latest = await self._latest()
        if latest is None:
            return [None] * len(objects)
        names = [cache_name(latest, o.bucket, o.key) for o in objects]
        blobs = await self._cache.get_many(names)
        return [await self._open(o, blob, latest) for o, blob in zip(objects, blobs, strict=True)]

    async def find(self, obj: ObjectIdentity) -> ObjectSummary | None:
        return (await self.find_many([obj]))[0]

    async def publish_many(self, found: Sequence[tuple[ObjectIdentity, ObjectSummary]]) -> None:
        """Write these summaries through to the cache (one round trip; dropped on failure)."""
        if not found or self._cache is None or not self.enabled:
            return
        latest = await self._latest()
        if latest is None:
            return
        entries: dict[str, bytes] = {}
        for obj, summary in found:
            facts = facts_of(summary)
            if facts is not None:
                entries[cache_name(latest, obj.bucket, obj.key)] = seal_entry(latest, obj, facts)
        await self._cache.put_many(entries)

    async def publish(self, obj: ObjectIdentity, summary: ObjectSummary) -> None:
        await self.publish_many([(obj, summary)])

    async def _latest(self) -> MetadataKey | None:
        """The latest metadata key (cached by the key service), or None when Vault does not
        give it: the cache is then skipped, never the request failed."""
        try:
            return await self._keys.metadata_key()
        except S3ProxyError as exc:
            log.warning("the shared metadata cache is skipped: no metadata key (%s)", exc)
            return None

    async def _open(
        self, obj: ObjectIdentity, blob: bytes | None, latest: MetadataKey
    ) -> ObjectSummary | None:
        """The summary in ``blob`` if it opens for ``obj``; anything else is a miss. An entry
        naming a key version above the latest is not asked of Vault (none was sealed so)."""
        if blob is None:
            return None
        try:
            version = entry_key_version(blob)
            if version > latest.version:
                return None
            key = latest if version == latest.version else await self._keys.metadata_key(version)
            return summary_of(open_entry(key, obj, blob))
        except (S3ProxyError, ValueError):
            return None
