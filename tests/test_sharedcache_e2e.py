"""The shared metadata cache end to end: real ``s3proxy serve`` processes, moto with SigV4, the
session's OpenBao and a real ``redis-server``. What one proxy wrote, a second, fresh one lists
and HEADs with no look-up upstream (counted by its own metrics); with Redis stopped mid-run a
third, fresh one answers the same sizes and ETags, with look-ups. (The exact requests, altered
and replayed entries: tests/test_inproc_sharedcache.py.)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from s3proxy.devstack import S3Server, Vault, free_port
from tests.conftest import ProxyProcess, start_proxy, upload_multipart
from tests.redis_server import start_redis
from tests.test_metrics import scrape, value

pytestmark = pytest.mark.timeout(180)
MIB = 1024 * 1024


def fresh_proxy(
    procs: list[ProxyProcess], workdir: Path, vault: Vault, s3: S3Server, cache_url: str
) -> tuple[ProxyProcess, int]:
    """A new proxy process (nothing cached) sharing the cache at ``cache_url``; its admin
    port (metrics)."""
    admin = free_port()
    extra = {
        "S3PROXY_ADMIN_LISTEN": f"127.0.0.1:{admin}",
        "S3PROXY_METADATA_CACHE_URL": cache_url,
        # Longer than a loaded test machine ever stalls a healthy Redis: a timeout would skip
        # the cache for a while and the counts would not be the cache's.
        "S3PROXY_METADATA_CACHE_TIMEOUT": "5",
        "S3PROXY_WORKERS": "1",  # (one process's metrics)
    }
    p = start_proxy(workdir, vault, s3, extra)
    procs.append(p)
    return p, admin


def upstream_gets(admin: int) -> float:
    return value(scrape(admin), "s3proxy_upstream_request_duration_seconds_count", method="GET")


def listing(client: Any, bucket: str) -> dict[str, tuple[int, str]]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, MaxKeys=10)
    return {o["Key"]: (o["Size"], o["ETag"]) for page in pages for o in page.get("Contents", [])}


def heads(client: Any, bucket: str, keys: list[str]) -> dict[str, tuple[int, str]]:
    found = {}
    for key in keys:
        got = client.head_object(Bucket=bucket, Key=key)
        found[key] = (got["ContentLength"], got["ETag"])
    return found


def test_a_fresh_proxy_lists_and_heads_what_another_wrote_without_a_look_up(
    procs: list[ProxyProcess],
    workdir: Path,
    tmp_path: Path,
    vault: Vault,
    s3: S3Server,
    bucket: str,
) -> None:
    redis = start_redis(tmp_path / "redis")
    try:
        writer, _ = fresh_proxy(procs, workdir, vault, s3, redis.url)
        client = writer.client()
        bodies = {f"small/{i:02d}": os.urandom(100 + 997 * i) for i in range(24)}
        for key, data in bodies.items():
            client.put_object(Bucket=bucket, Key=key, Body=data)
        parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(1000)]
        upload_multipart(client, bucket, "multipart", parts)
        client.copy_object(Bucket=bucket, Key="copied", CopySource=f"{bucket}/multipart")
        expected = listing(client, bucket)  # the writer's answers
        assert {k: expected[k][0] for k in bodies} == {k: len(v) for k, v in bodies.items()}
        assert expected["multipart"][0] == expected["copied"][0] == sum(map(len, parts))

        reader, admin = fresh_proxy(procs, workdir, vault, s3, redis.url)
        before = upstream_gets(admin)
        assert listing(reader.client(), bucket) == expected
        assert upstream_gets(admin) - before == 3  # the three pages: no object looked up
        before = upstream_gets(admin)
        assert heads(reader.client(), bucket, ["multipart", "copied"]) == {
            k: expected[k] for k in ("multipart", "copied")
        }
        assert upstream_gets(admin) - before == 2  # one per HEAD, multipart or not
    finally:
        redis.stop()
    # Redis stopped mid-run: a fresh proxy looks objects up, and answers the same.
    cold, admin = fresh_proxy(procs, workdir, vault, s3, redis.url)
    before = upstream_gets(admin)
    assert listing(cold.client(), bucket) == expected
    assert upstream_gets(admin) - before >= 3 + len(expected)
    assert heads(cold.client(), bucket, ["multipart"]) == {"multipart": expected["multipart"]}
