"""The shared metadata cache in use (docs/metadata.md, Shared cache): proxies in the test process
in front of the playbook's scripted upstream, sharing a real ``redis-server``. Every test states
the exact upstream requests: what one proxy wrote, completed, copied or looked up, a fresh one
lists and HEADs without a look-up; an entry altered, moved or replayed in Redis is not used; a
stopped Redis costs look-ups, never an answer."""

from __future__ import annotations

import base64
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3proxy.core.cacheentry import ObjectFacts, ObjectIdentity, seal_entry
from s3proxy.core.format import seal
from s3proxy.ops.rewrap import Rewrapper
from s3proxy.store.sharedcache import SharedCache
from tests.inproc import Harness, InProcProxy, Target
from tests.playbook import ANY, GET, Unordered
from tests.redis_server import RedisServer, start_redis
from tests.test_inproc_requests import PARTS, TAIL, md5, multipart_etag, put, upload

LISTING = GET("/b?list-type=2&encoding-type=url")
ENTRY_NAMES = "s3proxy:m1:*"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[Any]:
    """A client of the test's Redis, emptied before the test."""
    client = redis_server.client()
    client.flushall()
    try:
        yield client
    finally:
        client.close()


def cached_proxy(harness: Harness, server: RedisServer) -> InProcProxy:
    """A new proxy (another process: its own caches) sharing ``server``."""
    # (a timeout longer than a loaded test machine stalls a healthy Redis: one would skip the
    # cache for a while, and the requests would not be the cache's)
    return harness.proxy(S3PROXY_METADATA_CACHE_URL=server.url, S3PROXY_METADATA_CACHE_TIMEOUT="5")


def listed(proxy: InProcProxy) -> dict[str, tuple[int, str]]:
    found = proxy.client.list_objects_v2(Bucket="b")["Contents"]
    return {o["Key"]: (o["Size"], o["ETag"]) for o in found}


def head(proxy: InProcProxy, key: str) -> tuple[int, str]:
    got = proxy.client.head_object(Bucket="b", Key=key)
    return got["ContentLength"], got["ETag"]


def test_what_one_proxy_wrote_another_lists_and_heads_without_a_look_up(
    harness: Harness, redis_server: RedisServer, redis: Any
) -> None:
    writer = cached_proxy(harness, redis_server)
    small, large = os.urandom(4000), os.urandom(300_000)
    parts = [os.urandom(n) for n in PARTS]
    put(writer, "small", small)
    put(writer, "large", large)
    etag = upload(writer, "m", parts)  # completed: written through too
    with harness.book.anything():  # copied by the store: written through too
        writer.client.copy_object(Bucket="b", Key="m-copy", CopySource="b/m")
    expected = {
        "small": (4000, md5(small)),
        "large": (300_000, md5(large)),
        "m": (sum(PARTS), etag),
        "m-copy": (sum(PARTS), etag),
    }
    assert etag == multipart_etag(parts)
    assert len(redis.keys(ENTRY_NAMES)) == 4
    # A fresh proxy: the listing alone, one look-up of the cache for the page.
    lister = cached_proxy(harness, redis_server)
    with harness.book.expect(LISTING):
        assert listed(lister) == expected
    # A HEAD: its one request, however many parts (without the cache: the end, the first
    # header, every part boundary and the manifest tag).
    header = cached_proxy(harness, redis_server)
    for key in ("m", "m-copy", "large"):
        with harness.book.expect(TAIL(f"/b/{key}")):
            assert head(header, key) == expected[key]
    # A proxy without the cache looks every object up (a multipart object takes more than
    # its end), and finds the same.
    with harness.book.anything() as came:
        assert listed(harness.proxy()) == expected
    assert len(came) > 1 + len(expected)


def test_a_cold_listing_warms_the_cache_for_the_next_proxy(
    harness: Harness, redis_server: RedisServer, redis: Any
) -> None:
    writer = harness.proxy()  # no shared cache: nothing written through
    bodies = {f"k{i}": os.urandom(1000 + i) for i in range(5)}
    for key, data in bodies.items():
        put(writer, key, data)
    expected = {k: (len(v), md5(v)) for k, v in bodies.items()}
    assert redis.keys(ENTRY_NAMES) == []
    first = cached_proxy(harness, redis_server)
    with harness.book.expect(LISTING, Unordered(*(TAIL(f"/b/{k}", If_Match=ANY) for k in bodies))):
        assert listed(first) == expected
    assert len(redis.keys(ENTRY_NAMES)) == 5  # one pipelined write for the page
    with harness.book.expect(LISTING):
        assert listed(cached_proxy(harness, redis_server)) == expected


def test_entries_altered_moved_or_replayed_in_redis_are_not_used(
    harness: Harness, redis_server: RedisServer, redis: Any
) -> None:
    writer = cached_proxy(harness, redis_server)
    old, new, other = os.urandom(5000), os.urandom(6000), os.urandom(7000)
    put(writer, "k", old)
    (name,) = redis.keys(ENTRY_NAMES)
    replayed = redis.get(name)  # the entry of the content about to be overwritten
    put(writer, "k", new)
    put(writer, "j", other)
    expected = {"j": (7000, md5(other)), "k": (6000, md5(new))}
    assert redis.get(name) != replayed
    # Replayed: the entry of k's earlier content, put back under k's name.
    redis.set(name, replayed)
    with harness.book.expect(LISTING, TAIL("/b/k", If_Match=ANY)):
        assert listed(cached_proxy(harness, redis_server)) == expected
    # Altered: any byte of an entry changed (k's entry is the right one again: the look-up
    # above wrote it through).
    for at in (0, 8, 30, -1):
        entry = bytearray(redis.get(name))
        entry[at] ^= 0x01
        redis.set(name, bytes(entry))
        with harness.book.expect(LISTING, TAIL("/b/k", If_Match=ANY)):
            assert listed(cached_proxy(harness, redis_server)) == expected
    # Moved: j's entry under k's name (an entry opens only for the object it was sealed for).
    j_name = next(n for n in redis.keys(ENTRY_NAMES) if n != name)
    redis.set(name, redis.get(j_name))
    with harness.book.expect(LISTING, TAIL("/b/k", If_Match=ANY)):
        assert listed(cached_proxy(harness, redis_server)) == expected
    with harness.book.expect(TAIL("/b/k")):  # a v3 HEAD reads its footer, not the cache
        assert head(cached_proxy(harness, redis_server), "k") == expected["k"]


def test_redis_stopped_mid_run_answers_stay_exact(
    harness: Harness, tmp_path: Path, redis: Any
) -> None:
    server = start_redis(tmp_path / "own")  # this test stops it
    try:
        writer = cached_proxy(harness, server)
        parts = [os.urandom(n) for n in PARTS]
        small = os.urandom(3000)
        put(writer, "small", small)
        etag = upload(writer, "m", parts)
        expected = {"small": (3000, md5(small)), "m": (sum(PARTS), etag)}
        lister = cached_proxy(harness, server)
        with harness.book.expect(LISTING):
            assert listed(lister) == expected
    finally:
        server.stop()
    # Redis gone: every object is looked up (slower), the answers are the same.
    with harness.book.anything() as came:
        assert listed(cached_proxy(harness, server)) == expected
    assert {(r.method, r.path) for r in came} >= {("GET", "/b/small"), ("GET", "/b/m")}
    assert len(came) > 3  # the listing, the small object's end, the multipart object's reads
    with harness.book.anything() as came:
        assert head(cached_proxy(harness, server), "m") == expected["m"]
    assert len(came) > 1


def test_a_rewrapped_object_is_written_through(
    harness: Harness, redis_server: RedisServer, redis: Any
) -> None:
    """``s3proxy rewrap`` stores each object anew (a new stored ETag): its entry is written
    through, so a fresh proxy lists it without a look-up."""
    writer = harness.proxy()  # no shared cache: nothing written through at the write
    data = os.urandom(50_000)
    put(writer, "k", data)
    before = harness.store.get("b", "k").etag
    assert writer._vault is not None and writer.keys is not None
    settings = cached_proxy(harness, redis_server).config.metadata_cache

    async def rewrap() -> str:
        async with SharedCache(settings) as cache:
            rewrapper = Rewrapper(writer._vault, writer.upstream, "crc32", writer.keys, cache)  # type: ignore[arg-type]
            return await rewrapper.one(Target("b", "k", ()), latest=2)

    with harness.book.anything():
        assert harness.run(rewrap()) == "rewritten"
    assert harness.store.get("b", "k").etag != before
    with harness.book.expect(LISTING):
        assert listed(cached_proxy(harness, redis_server)) == {"k": (50_000, md5(data))}


def _old_stream(harness: Harness, data: bytes, version: int) -> bytes:
    """``data`` sealed as an earlier release stored a PutObject (format ``version``)."""
    vault = harness.vault
    code, answer = vault.api("POST", f"transit/datakey/plaintext/{vault.transit_key}", {})
    assert code == 200
    key = base64.b64decode(answer["data"]["plaintext"])
    if version == 1:
        return seal(key, answer["data"]["ciphertext"], data, 65536, version=1)
    crc = zlib.crc32(data).to_bytes(4, "big")
    return seal(
        key, answer["data"]["ciphertext"], data, 65536, version=2, whole_object=True,
        checksum_algorithm="crc32", checksum=crc,
    )  # fmt: skip


def test_objects_of_earlier_formats_with_the_shared_cache(
    harness: Harness, redis_server: RedisServer, redis: Any
) -> None:
    """A v2 object's look-up (its end and its first bytes) is written through: the next fresh
    proxy lists it without a look-up and HEADs it with its end alone, checksum included. A v1
    object keeps its stored ETag: nothing is shared of it, and it is looked up as before."""
    v2_data, v1_data = os.urandom(300_000), os.urandom(150_000)
    stored = harness.store.put(
        "b", "v2", _old_stream(harness, v2_data, 2), s3proxy_encryption="v=2;seg=65536"
    ).etag
    v1_etag = harness.store.put(
        "b", "v1", _old_stream(harness, v1_data, 1), s3proxy_encryption="v=1;seg=65536"
    ).etag
    crc = base64.b64encode(zlib.crc32(v2_data).to_bytes(4, "big")).decode()
    expected = {"v1": (150_000, v1_etag), "v2": (300_000, md5(v2_data))}
    first = cached_proxy(harness, redis_server)
    with harness.book.expect(
        TAIL("/b/v2"), GET("/b/v2", Range="bytes=0-255", If_Match=stored)
    ):  # (the cache misses: then the look-up of a v2 object, as without it)
        got = first.client.head_object(Bucket="b", Key="v2", ChecksumMode="ENABLED")
    assert (got["ContentLength"], got["ETag"], got["ChecksumCRC32"]) == (300_000, md5(v2_data), crc)
    assert len(redis.keys(ENTRY_NAMES)) == 1  # the v2 object's; none of the v1 object
    second = cached_proxy(harness, redis_server)
    with harness.book.expect(TAIL("/b/v2")):
        got = second.client.head_object(Bucket="b", Key="v2", ChecksumMode="ENABLED")
    assert (got["ContentLength"], got["ETag"], got["ChecksumCRC32"]) == (300_000, md5(v2_data), crc)
    with harness.book.expect(LISTING, TAIL("/b/v1", If_Match=v1_etag), *_V1_LOOK_UP):
        assert listed(cached_proxy(harness, redis_server)) == expected
    assert len(redis.keys(ENTRY_NAMES)) == 1


_V1_LOOK_UP = (GET("/b/v1", Range="bytes=0-150303", If_Match=ANY),)  # (read whole: small)


def test_a_large_objects_whole_get_is_one_request_with_the_shared_cache(
    harness: Harness, redis_server: RedisServer, redis: Any
) -> None:
    """Above the whole-read size a cold GET reads the body, then the footer (2 requests); with
    the object's entry in the shared cache the body's request alone answers, its footer
    checked against the entry before the last plaintext goes out."""
    writer = cached_proxy(harness, redis_server)
    data = os.urandom(1024 * 1024)
    etag = put(writer, "big", data)
    with harness.book.expect(GET("/b/big")):
        got = cached_proxy(harness, redis_server).client.get_object(
            Bucket="b", Key="big", ChecksumMode="ENABLED"
        )
        assert got["Body"].read() == data
    assert got["ETag"] == etag == md5(data) and got["ContentLength"] == len(data)
    assert got["ChecksumCRC32"] == base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    stored = harness.store.get("b", "big")
    end = len(stored.data)
    with harness.book.expect(
        GET("/b/big"), GET("/b/big", Range=f"bytes={end - 160}-{end - 1}", If_Match=ANY)
    ):
        assert harness.proxy().client.get_object(Bucket="b", Key="big")["Body"].read() == data


def test_a_footer_that_does_not_record_the_entry_cuts_the_body_short(
    harness: Harness, redis_server: RedisServer, redis: Any
) -> None:
    """The store swaps in another object's footer (valid, sealed by the proxy) under the
    object's own stored ETag: the segments still authenticate, but the footer is not this
    stream's, so the answer stops short of its last bytes."""
    writer = cached_proxy(harness, redis_server)
    put(writer, "big", os.urandom(1024 * 1024))
    put(writer, "other", os.urandom(1024 * 1024))
    stored, other = harness.store.get("b", "big"), harness.store.get("b", "other")
    assert len(stored.data) == len(other.data)
    stored.data = stored.data[:-160] + other.data[-160:]  # (the stored ETag kept as it was)
    with harness.book.anything():
        answered = cached_proxy(harness, redis_server).request("GET", "/b/big")
    assert answered.status == 200 and not answered.complete
    assert len(answered.body) < 1024 * 1024


def test_an_entry_that_the_footer_does_not_bear_out_cuts_the_body_short(
    harness: Harness, redis_server: RedisServer, redis: Any
) -> None:
    """An entry sealed with the metadata key (only a proxy could) for the right object but with
    another MD5: the header fits, the footer opens, but it records another MD5, so the answer
    stops short of its last bytes rather than end under an ETag its bytes do not have."""
    writer = cached_proxy(harness, redis_server)
    data = os.urandom(1024 * 1024)
    put(writer, "big", data)
    stored = harness.store.get("b", "big")
    (name,) = redis.keys(ENTRY_NAMES)
    assert writer.keys is not None
    key = harness.run(writer.keys.metadata_key())
    wrong = ObjectFacts(len(data), md5(b"something else"), "crc32", "AAAAAA==", "FULL_OBJECT")
    obj = ObjectIdentity("b", "big", "", stored.etag, len(stored.data))
    redis.set(name, seal_entry(key, obj, wrong))
    with harness.book.anything():
        answered = cached_proxy(harness, redis_server).request("GET", "/b/big")
    assert answered.status == 200 and not answered.complete
    assert answered.headers["ETag"] == md5(b"something else")  # (what the entry said)
    assert len(answered.body) < len(data)
