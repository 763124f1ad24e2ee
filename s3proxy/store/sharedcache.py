"""The shared metadata cache (docs/metadata.md, Shared cache): sealed entries
(s3proxy.core.cacheentry) in a Redis or Valkey that the proxies of a transit key share, so a
listing or HEAD one proxy has answered costs the others no upstream request.

The cache may cost speed but never correctness or availability: every operation has a short
timeout, any failure is answered as a miss (reads) or dropped (writes), and after a failure the
cache is not tried for :data:`BACKOFF` seconds, then by one request at a time until Redis answers
again, so a dead or hung Redis adds no latency to the requests in between. Failures are counted
(``s3proxy_metadata_cache_requests_total``) and logged at most once per
:data:`WARNING_INTERVAL`. Neither the password nor the URL's password is ever logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import TimeoutError as RedisTimeout

from s3proxy.config.metadatacache import MetadataCacheSettings
from s3proxy.telemetry.metrics import metadata_cache_request

log = logging.getLogger("s3proxy.store.sharedcache")

BACKOFF = 5.0  # seconds the cache is skipped after a failure
WARNING_INTERVAL = 60.0  # at most one warning about the cache per this many seconds
_MISSING = object()


class SharedCache:
    """An async context manager over a Redis client; with settings that name no URL, every
    read misses and every write is dropped, without Redis."""

    def __init__(
        self, settings: MetadataCacheSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._client: Redis | None = None
        self._failing = False
        self._resume_at = 0.0  # while failing: skip the cache until then
        self._next_warning = 0.0
        self._unlogged = 0  # failures since the last warning
        self._warned = False  # a warning was logged since the cache last answered
        self._secrets = [s for s in (settings.password, *_url_passwords(settings.url)) if s]

    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    async def __aenter__(self) -> SharedCache:
        if self._settings.url is not None and self._client is None:
            self._client = _client(self._settings)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception as error:  # closing a broken connection: nothing to keep
                log.debug("closing the shared metadata cache: %s", self._describe(error))

    async def get_many(self, names: list[str]) -> list[bytes | None]:
        """The entries stored under ``names`` (None for each one missing), in one round trip
        (MGET); all None when the cache fails or is backed off."""
        if not names:
            return []
        found = await self._run("get", lambda client: client.mget(names))
        if not isinstance(found, list) or len(found) != len(names):
            return [None] * len(names)
        return [value if isinstance(value, bytes) else None for value in found]

    async def put(self, name: str, blob: bytes) -> None:
        """Store ``blob`` under ``name`` for the configured TTL (dropped on failure)."""
        ttl = self._settings.ttl
        await self._run("put", lambda client: client.set(name, blob, ex=ttl))

    async def put_many(self, entries: dict[str, bytes]) -> None:
        """Store each blob under its name for the configured TTL, in one round trip (a
        pipeline of SETs; dropped on failure)."""
        if not entries:
            return
        if len(entries) == 1:
            await self.put(*next(iter(entries.items())))
            return
        ttl = self._settings.ttl

        async def pipelined(client: Redis) -> Any:
            async with client.pipeline(transaction=False) as pipe:
                for name, blob in entries.items():
                    pipe.set(name, blob, ex=ttl)
                return await pipe.execute()

        await self._run("put", pipelined)

    async def delete(self, names: list[str]) -> None:
        """Remove the entries under ``names`` (dropped on failure: an entry left behind does not
        open for the object that replaced it, and expires)."""
        if names:
            await self._run("delete", lambda client: client.delete(*names))

    async def _run(self, op: str, command: Callable[[Redis], Awaitable[Any]]) -> Any:
        """``command``'s answer, or :data:`_MISSING` if the cache failed or was skipped."""
        client = self._client
        if client is None:
            return _MISSING
        if not self._admit():
            metadata_cache_request(op, "skipped")
            return _MISSING
        try:
            async with asyncio.timeout(self._settings.timeout):
                answer = await command(client)
        except Exception as error:  # any failure of the cache is a miss, never the request's
            self._failed(op, error)
            return _MISSING
        self._answered(op)
        return answer

    def _admit(self) -> bool:
        """Whether to try the cache now: always while it answers; after a failure, once
        :data:`BACKOFF` has passed, for one request at a time."""
        if not self._failing:
            return True
        now = self._clock()
        if now < self._resume_at:
            return False
        self._resume_at = now + BACKOFF  # the others skip while this one tries
        return True

    def _answered(self, op: str) -> None:
        metadata_cache_request(op, "ok")
        if self._failing and self._warned:
            log.info("the shared metadata cache %s answers again", self._settings.shown_url)
        self._failing = self._warned = False

    def _failed(self, op: str, error: Exception) -> None:
        timeout = isinstance(error, TimeoutError | RedisTimeout)
        metadata_cache_request(op, "timeout" if timeout else "error")
        now = self._clock()
        self._failing = True
        self._resume_at = now + BACKOFF
        self._unlogged += 1
        if now < self._next_warning:
            return
        self._next_warning = now + WARNING_INTERVAL
        log.warning(
            "the shared metadata cache %s failed (%s); requests go on without it, trying again "
            "in %.0f s (%d failures since the last warning)",
            self._settings.shown_url,
            "timed out" if timeout else self._describe(error),
            BACKOFF,
            self._unlogged,
        )
        self._unlogged = 0
        self._warned = True

    def _describe(self, error: BaseException) -> str:
        """The error's type and message, cut short, with any secret of the settings removed."""
        text = f"{type(error).__name__}: {error}"[:300]
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _client(settings: MetadataCacheSettings) -> Redis:
    """A client that connects on first use; one immediate retry on a broken connection (a
    pooled connection Redis closed), all within the operation's timeout."""
    assert settings.url is not None
    options: dict[str, Any] = {
        "socket_timeout": settings.timeout,
        "socket_connect_timeout": settings.timeout,
        "retry": Retry(NoBackoff(), 1),
    }
    if settings.password is not None:
        options["password"] = settings.password
    if settings.url.startswith("rediss://"):
        options.update(ssl_cert_reqs="required", ssl_check_hostname=True)
        if settings.ca_file is not None:
            options["ssl_ca_certs"] = settings.ca_file
    client: Redis = Redis.from_url(settings.url, **options)
    return client


def _url_passwords(url: str | None) -> list[str]:
    """The URL's password as written and as sent (percent-decoded)."""
    password = urlsplit(url).password if url else None
    return [password, unquote(password)] if password else []
