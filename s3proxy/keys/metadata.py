"""Metadata keys in a process: one Vault call per transit key version, however many objects,
data keys or concurrent requests need it (docs/format.md, Metadata keys). The latest version,
which writes use, is asked again every ``latest_seconds`` so that a rotation is taken up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from s3proxy.core.footer import MetadataKey

LATEST_SECONDS = 300.0

Source = Callable[[int | None], Awaitable[MetadataKey]]


class MetadataKeys:
    """Metadata keys by version, from ``source`` (``VaultTransit.metadata_key``); each version
    asked once (concurrent askers share the call; a failed call is not remembered)."""

    def __init__(
        self,
        source: Source,
        latest_seconds: float = LATEST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._latest_seconds = latest_seconds
        self._clock = clock
        self._keys: dict[int, MetadataKey] = {}
        self._asking: dict[int | None, asyncio.Task[MetadataKey]] = {}
        self._latest: tuple[float, int] | None = None  # when it was asked, and the version

    async def version(self, version: int) -> MetadataKey:
        """The key of ``version`` (a footer names it)."""
        found = self._keys.get(version)
        if found is None:
            found = await self._ask(version)
        return found

    async def latest(self) -> MetadataKey:
        """The key of the transit key's latest version (what new footers are sealed under)."""
        if self._latest is not None and self._clock() - self._latest[0] < self._latest_seconds:
            return self._keys[self._latest[1]]
        found = await self._ask(None)
        self._latest = (self._clock(), found.version)
        return found

    async def _ask(self, version: int | None) -> MetadataKey:
        task = self._asking.get(version)
        if task is None:
            task = asyncio.ensure_future(self._source(version))
            self._asking[version] = task
            task.add_done_callback(lambda _: self._asking.pop(version, None))
        found = await asyncio.shield(task)
        self._keys.setdefault(found.version, found)
        return self._keys[found.version]
