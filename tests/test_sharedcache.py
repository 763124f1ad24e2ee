"""The shared metadata cache (s3proxy/store/sharedcache.py) against a real redis-server: one
MGET per page, passwords, TLS, and that a failing, hung or missing Redis costs misses only, fast,
with one warning a minute and never a password in a log or an error."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client import REGISTRY

from s3proxy.config import ConfigError, MetadataCacheSettings, load
from s3proxy.core.cacheentry import ObjectFacts, ObjectIdentity, cache_name, open_entry, seal_entry
from s3proxy.core.footer import MetadataKey
from s3proxy.devstack import free_port
from s3proxy.store import sharedcache
from s3proxy.store.sharedcache import SharedCache
from tests.conftest import SESSION_SECRETS
from tests.redis_server import RedisServer, start_redis

BASE = {"S3PROXY_VAULT_TRANSIT_KEY": "k", "VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_TOKEN": "t"}
MK = MetadataKey.derive(1, hashlib.sha256(b"an HMAC from Vault").digest())
PASSWORD = f"redis-password-{uuid.uuid4().hex}"  # unmistakable in a log
SESSION_SECRETS.append(PASSWORD)
T = TypeVar("T")


class Clock:
    """A monotonic clock the test moves: backoff and warning intervals without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings(**values: str) -> MetadataCacheSettings:
    """The settings as the proxy loads them from S3PROXY_METADATA_CACHE_<NAME> variables."""
    env = {f"S3PROXY_METADATA_CACHE_{name.upper()}": value for name, value in values.items()}
    return load({**BASE, **env}).metadata_cache


def run(body: Callable[[SharedCache], Awaitable[T]], cache_settings: Any, clock: Any = None) -> T:
    async def main() -> T:
        cache = SharedCache(cache_settings, clock or time.monotonic)
        async with cache:
            return await body(cache)

    return asyncio.run(main())


def count(op: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "s3proxy_metadata_cache_requests_total", {"op": op, "outcome": outcome}
    )
    return value or 0.0


def names(n: int) -> list[str]:
    prefix = uuid.uuid4().hex
    return [cache_name(MK, "bucket", f"{prefix}/{i}") for i in range(n)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    found = start_redis(tmp_path / "redis")
    yield found
    found.stop()


def test_a_page_of_names_is_one_mget(server: RedisServer) -> None:
    stored, missing = names(100), names(50)
    identity = ObjectIdentity("bucket", "a/key", "", '"stored-etag"', 2000)
    facts = ObjectFacts(1000, '"plain-etag"', "crc64nvme", "AAAAAAAAAAA=", "FULL_OBJECT")
    blobs = {name: seal_entry(MK, identity, facts) for name in stored}
    asked = stored[:50] + missing + stored[50:]

    async def body(cache: SharedCache) -> list[bytes | None]:
        for name, blob in blobs.items():
            await cache.put(name, blob)
        direct.config_resetstat()
        return await cache.get_many(asked)

    direct = server.client()
    found = run(body, settings(url=server.url, timeout="1"))
    assert found == [blobs.get(name) for name in asked]
    assert open_entry(MK, identity, found[0] or b"") == facts
    stats = direct.info("commandstats")
    assert stats["cmdstat_mget"]["calls"] == 1, stats
    assert "cmdstat_get" not in stats, stats
    assert 604790 < direct.ttl(stored[0]) <= 604800  # the default TTL, 7 days
    direct.close()


def test_nothing_asked_costs_no_request(server: RedisServer) -> None:
    direct = server.client()
    direct.config_resetstat()
    assert run(lambda cache: cache.get_many([]), settings(url=server.url)) == []
    assert "cmdstat_mget" not in direct.info("commandstats")
    direct.close()


def test_delete_and_flushall_are_misses(server: RedisServer) -> None:
    kept, deleted = names(3), names(2)

    async def body(cache: SharedCache) -> tuple[list[bytes | None], ...]:
        for name in kept + deleted:
            await cache.put(name, name.encode())
        await cache.delete(deleted)
        before = await cache.get_many(kept + deleted)
        direct.flushall()
        return before, await cache.get_many(kept + deleted)

    direct = server.client()
    before, after = run(body, settings(url=server.url, timeout="1"))
    assert before == [name.encode() for name in kept] + [None, None]
    assert after == [None] * 5
    direct.close()


def test_entries_expire_after_their_ttl(server: RedisServer) -> None:
    name = names(1)

    async def body(cache: SharedCache) -> tuple[list[bytes | None], ...]:
        await cache.put(name[0], b"entry")
        fresh = await cache.get_many(name)
        await asyncio.sleep(1.1)
        return fresh, await cache.get_many(name)

    fresh, expired = run(body, settings(url=server.url, timeout="1", ttl_seconds="1"))
    assert fresh == [b"entry"] and expired == [None]


def test_password_from_a_file_or_the_url(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = start_redis(tmp_path / "redis", password=PASSWORD)
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_text(PASSWORD + "\n")
    wrong.write_text("wrong-" + PASSWORD)
    name = names(1)

    async def body(cache: SharedCache) -> list[bytes | None]:
        await cache.put(name[0], b"entry")
        return await cache.get_many(name)

    try:
        caplog.set_level(logging.INFO)
        with_file = settings(url=server.url, password_file=str(right), timeout="1")
        assert run(body, with_file) == [b"entry"]
        with_url = settings(url=server.url.replace("//", f"//:{PASSWORD}@"), timeout="1")
        assert run(body, with_url) == [b"entry"]
        assert PASSWORD not in repr(with_url)
        put_errors, get_skips = count("put", "error"), count("get", "skipped")
        assert run(body, settings(url=server.url, password_file=str(wrong))) == [None]
        # the put failed, so the get did not try
        assert (count("put", "error"), count("get", "skipped")) == (put_errors + 1, get_skips + 1)
        assert run(body, settings(url=server.url)) == [None]  # no password
    finally:
        server.stop()
    assert "shared metadata cache" in caplog.text
    assert PASSWORD not in caplog.text


def test_tls_with_the_ca_file(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis", tls=True)
    name = names(1)

    async def body(cache: SharedCache) -> list[bytes | None]:
        await cache.put(name[0], b"entry")
        return await cache.get_many(name)

    try:
        trusted = settings(url=server.url, ca_file=str(server.ca_file), timeout="1")
        assert run(body, trusted) == [b"entry"]
        assert run(body, settings(url=server.url, timeout="1")) == [None]  # not the system CAs'
        plain = settings(url=server.url.replace("rediss://", "redis://"), timeout="1")
        assert run(body, plain) == [None]
    finally:
        server.stop()


def test_redis_stopped_mid_run_costs_misses_quickly(server: RedisServer) -> None:
    name = names(1)
    clock = Clock()

    async def body(cache: SharedCache) -> tuple[list[bytes | None], ...]:
        await cache.put(name[0], b"entry")
        before = await cache.get_many(name)
        server.stop()
        started = time.monotonic()
        after = [await cache.get_many(name)]
        await cache.put(name[0], b"again")
        await cache.delete(name)
        clock.now += sharedcache.BACKOFF + 1  # the next request tries Redis again
        after.append(await cache.get_many(name))
        assert time.monotonic() - started < 1
        return before, *after

    before, *after = run(body, settings(url=server.url), clock)
    assert before == [b"entry"] and after == [[None], [None]]


def test_a_hung_redis_times_out_then_is_skipped_until_it_answers(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    name = names(1)
    clock = Clock()
    caplog.set_level(logging.INFO, logger="s3proxy.store.sharedcache")

    async def timed(cache: SharedCache) -> tuple[list[bytes | None], float]:
        started = time.monotonic()
        found = await cache.get_many(name)
        return found, time.monotonic() - started

    async def body(cache: SharedCache) -> list[tuple[list[bytes | None], float]]:
        await cache.put(name[0], b"entry")
        server.pause()
        try:
            hung = [await timed(cache)]
            skipped = count("get", "skipped")
            hung += [await timed(cache) for _ in range(20)]
            assert count("get", "skipped") == skipped + 20
        finally:
            server.resume()
        clock.now += sharedcache.BACKOFF
        return [*hung, await timed(cache)]

    timeouts = count("get", "timeout")
    results = run(body, settings(url=server.url, timeout="0.2"), clock)
    assert count("get", "timeout") == timeouts + 1
    first, *skipped, recovered = results
    assert first[0] == [None] and 0.15 < first[1] < 1
    assert all(found == [None] and seconds < 0.05 for found, seconds in skipped)
    assert recovered[0] == [b"entry"]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("failed (timed out)" in m for m in messages) == 1, messages
    assert any("answers again" in m for m in messages), messages


def test_an_unreachable_redis_warns_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    caplog.set_level(logging.WARNING, logger="s3proxy.store.sharedcache")
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}"  # nobody listens there

    async def body(cache: SharedCache) -> list[list[bytes | None]]:
        found = []
        started = time.monotonic()
        for _ in range(12):  # a failure every BACKOFF: 12 of them within a minute
            found.append(await cache.get_many(["a", "b"]))
            await cache.put("a", b"x")
            clock.now += sharedcache.BACKOFF
        assert time.monotonic() - started < 1
        clock.now += 1
        found.append(await cache.get_many(["a"]))
        return found

    errors = count("get", "error")
    found = run(body, settings(url=url), clock)
    assert found == [[None, None]] * 12 + [[None]]
    assert count("get", "error") == errors + 13
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "127.0.0.1" in warnings[0] and "12 failures since the last warning" in warnings[1]
    assert PASSWORD not in caplog.text


def test_without_a_url_there_is_no_cache() -> None:
    async def body(cache: SharedCache) -> list[bytes | None]:
        await cache.put("a", b"x")
        await cache.delete(["a"])
        return await cache.get_many(["a", "b"])

    cache_settings = settings()
    assert not cache_settings.enabled
    assert run(body, cache_settings) == [None, None]


def test_defaults() -> None:
    found = settings(url="rediss://user@cache.example:6380/2")
    assert (found.timeout, found.ttl, found.password, found.ca_file) == (0.25, 604800, None, None)
    assert found.enabled and found.shown_url == "rediss://***@cache.example:6380/2"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"url": "http://cache:6379"}, "redis:// or rediss://"),
        ({"url": f"redis://:{PASSWORD}@cache:99999"}, "invalid port"),
        ({"url": f"redis://:{PASSWORD}@cache:6379/x"}, "database number"),
        ({"url": f"rediss://:{PASSWORD}@cache?ssl_cert_reqs=none"}, "takes no options"),
        ({"url": "redis://cache", "timeout": "0"}, "_TIMEOUT must be positive"),
        ({"url": "redis://cache", "timeout": "soon"}, "_TIMEOUT must be a number"),
        ({"url": "redis://cache", "timeout": "inf"}, "_TIMEOUT must be a finite"),
        ({"url": "redis://cache", "ttl_seconds": "0"}, "_TTL_SECONDS must be a positive"),
        ({"url": "redis://cache", "ttl_seconds": "1.5"}, "_TTL_SECONDS must be a positive"),
        ({"password_file": "/etc/hostname"}, "need S3PROXY_METADATA_CACHE_URL"),
        ({"url": "redis://cache", "ca_file": "/etc/hostname"}, "needs a rediss:// URL"),
        ({"url": "rediss://cache", "ca_file": "/nonexistent"}, "not a readable file"),
        ({"url": "redis://cache", "password_file": "/nonexistent"}, "cannot read"),
        (
            {"url": f"redis://:{PASSWORD}@cache", "password_file": "/etc/hostname"},
            "not both",
        ),
    ],
)
def test_invalid_settings_are_configuration_errors(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        settings(**values)
    assert PASSWORD not in str(error.value)


def test_an_empty_password_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        settings(url="redis://cache", password_file=str(empty))
