"""Bounded caches in front of the key service (docs/keys.md).

- Writes: one Vault data key serves many streams until it is ``max_age`` seconds old, has served
  ``max_streams`` streams or ``max_bytes`` plaintext bytes. Every stream still derives its own
  key from it with a fresh salt (docs/format.md), so reuse never repeats a (key, nonce) pair.
- Reads: unwrapped data keys by wrapped key, at most ``entries`` of them, each for ``ttl``
  seconds.

Concurrent misses for the same key wait for one Vault call. A limit of zero disables a cache.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from s3proxy.config import CacheLimits
from s3proxy.core.errors import KeyServiceUnavailable
from s3proxy.core.footer import MetadataKey
from s3proxy.keys.metadata import MetadataKeys
from s3proxy.keys.transit import DataKey, KeyService
from s3proxy.telemetry import metrics


@dataclass
class _InUse:
    key: DataKey
    born: float
    streams: int = 0
    plaintext_bytes: int = 0


class CachingKeyService:
    """A :class:`KeyService` with the bounded caches above, wrapping the real one."""

    def __init__(
        self,
        inner: KeyService,
        limits: CacheLimits,
        clock: Callable[[], float] = time.monotonic,
        healthy: Callable[[], bool] = lambda: True,
    ) -> None:
        self._inner = inner
        self._healthy = healthy
        self._limits = limits
        self._clock = clock
        self._current: _InUse | None = None
        self._pending_new: asyncio.Future[DataKey] | None = None
        self._unwrapped: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._pending_unwrap: dict[str, asyncio.Future[bytes]] = {}
        self._metadata = MetadataKeys(inner.metadata_key, clock=clock)

    def _usable(self, entry: _InUse | None, size: int) -> bool:
        if entry is None:
            return False
        limits = self._limits
        return (
            self._clock() - entry.born < limits.datakey_max_age
            and entry.streams < limits.datakey_max_streams
            and entry.plaintext_bytes + size <= limits.datakey_max_bytes
        )

    async def new_data_key(self, plaintext_bytes: int = 0) -> DataKey:
        if not self._healthy():
            # Fail closed: no new ciphertext while Vault is unreachable, even from a cached key.
            self._current = None
            raise KeyServiceUnavailable("The key service (Vault) is unreachable.")
        if not self._limits.reuse_data_keys or plaintext_bytes > self._limits.datakey_max_bytes:
            return await self._inner.new_data_key(plaintext_bytes)
        reused = self._usable(self._current, plaintext_bytes)
        metrics.cache_lookup(metrics.KEY_CACHE_HITS, metrics.KEY_CACHE_MISSES, "datakey", reused)
        while not self._usable(self._current, plaintext_bytes):
            if self._pending_new is None:
                self._pending_new = asyncio.ensure_future(self._fetch_new(plaintext_bytes))
            await asyncio.shield(self._pending_new)
        current = self._current
        assert current is not None
        current.streams += 1
        current.plaintext_bytes += plaintext_bytes
        return current.key

    async def _fetch_new(self, plaintext_bytes: int) -> DataKey:
        try:
            key = await self._inner.new_data_key(plaintext_bytes)
            self._current = _InUse(key, self._clock())
            return key
        finally:
            self._pending_new = None

    async def metadata_key(self, version: int | None = None) -> MetadataKey:
        """A metadata key (the latest version's when ``version`` is None), asked of Vault once
        per version (docs/format.md, Metadata keys)."""
        if version is None:
            return await self._metadata.latest()
        return await self._metadata.version(version)

    async def unwrap(self, wrapped: str) -> bytes:
        if not self._limits.cache_unwrapped:
            return await self._inner.unwrap(wrapped)
        hit = self._unwrapped.get(wrapped)
        fresh = hit is not None and self._clock() - hit[0] < self._limits.unwrapped_ttl
        metrics.cache_lookup(metrics.KEY_CACHE_HITS, metrics.KEY_CACHE_MISSES, "unwrap", fresh)
        if hit is not None and fresh:
            self._unwrapped.move_to_end(wrapped)
            return hit[1]
        pending = self._pending_unwrap.get(wrapped)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_unwrap(wrapped))
            self._pending_unwrap[wrapped] = pending
        return await asyncio.shield(pending)

    async def _fetch_unwrap(self, wrapped: str) -> bytes:
        try:
            key = await self._inner.unwrap(wrapped)
        finally:
            self._pending_unwrap.pop(wrapped, None)
        self._unwrapped[wrapped] = (self._clock(), key)
        self._unwrapped.move_to_end(wrapped)
        while len(self._unwrapped) > self._limits.unwrapped_entries:
            self._unwrapped.popitem(last=False)
        return key
