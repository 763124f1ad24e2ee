"""The proxy built in the test process, in front of the playbook's fake upstream
(tests/playbook.py) and the session's real OpenBao: the same assembly as
``s3proxy/serve.py::run_proxy`` (settings from ``s3proxy.config.load``, static upstream
credentials, Upstream, VaultTransit behind CachingKeyService, Identity, ``ProxyServer``), served
on 127.0.0.1 by an aiohttp AppRunner on an event loop in a background thread, so that tests are
plain functions driving real boto3 (or raw HTTP) against it.

Several proxies may share one playbook: each has its own caches, as separate processes would.

This module is the one place the tests reach into the proxy's modules beyond ``s3proxy.config``
and ``s3proxy.serve``: where those move, only the imports here change.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import boto3
import pytest
from aiohttp import web
from botocore.config import Config as BotoConfig
from multidict import CIMultiDictProxy

from s3proxy.config import load
from s3proxy.core.objectinfo import ObjectInfo
from s3proxy.core.request import Target
from s3proxy.devstack import Vault
from s3proxy.keys.cache import CachingKeyService
from s3proxy.keys.transit import VaultTransit, vault_from
from s3proxy.serve import RUNNER_SETTINGS
from s3proxy.server.app import Proxy
from s3proxy.server.identity import Identity
from s3proxy.server.shell import ProxyServer
from s3proxy.store.objects import ObjectInspector
from s3proxy.store.sharedcache import SharedCache
from s3proxy.upstream.client import Upstream, upstream_from
from s3proxy.upstream.credentials import CredentialSource
from tests.playbook import Playbook, Store

__all__ = ["Harness", "InProcProxy", "ObjectInfo", "ObjectInspector", "Target", "harness"]

T = TypeVar("T")

PROXY_ACCESS_KEY = "AKIAINPROCPROXY"
PROXY_SECRET_KEY = "inproc-proxy-secret"  # (what the playbook sees is only that it signs)
TIMEOUT = 60.0  # seconds a call into the loop may take

# One botocore session for every client of the test run: its loaders and service models are
# read once (a session per client costs about 0.2 s).
_SESSION: boto3.session.Session | None = None


def _boto_session() -> boto3.session.Session:
    global _SESSION
    if _SESSION is None:
        _SESSION = boto3.session.Session(
            aws_access_key_id="AKIAWORKLOAD",
            aws_secret_access_key="workload-secret",
            region_name="us-east-1",
        )
    return _SESSION


class Loop:
    """An event loop running in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass(frozen=True)
class Answered:
    """A response of the proxy to a raw request: what arrived of its body, and whether all of
    it did (``False``: the proxy cut the connection short of its Content-Length)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    complete: bool = True


class InProcProxy:
    """One proxy (one process's state) in front of the playbook."""

    def __init__(self, harness: Harness, extra: Mapping[str, str]) -> None:
        self.harness = harness
        self.env = {
            "S3PROXY_LISTEN": "127.0.0.1:8190",  # (not bound: the runner below listens)
            "S3PROXY_S3_ENDPOINT": harness.book.endpoint,
            "S3PROXY_S3_REGION": "us-east-1",
            "S3PROXY_VAULT_TRANSIT_KEY": harness.vault.transit_key,
            "VAULT_ADDR": harness.vault.addr,
            "VAULT_TOKEN": harness.vault.token,
            "S3PROXY_WORKERS": "1",
            # A fixed upload form: no probe of the store before the first upload (the probe's
            # requests are counted in tests/test_upstream_checksums.py).
            "S3PROXY_UPSTREAM_CHECKSUM": "crc32",
            **extra,
        }
        self.config = load(self.env)
        self.port = 0
        self._runner: web.BaseRunner | None = None
        self._vault: VaultTransit | None = None
        self._credentials: CredentialSource | None = None
        self._upstream: Upstream | None = None
        self._client: Any = None
        self.proxy: Proxy | None = None
        self.keys: CachingKeyService | None = None
        self._shared: SharedCache | None = None

    async def start(self) -> None:
        config = self.config
        self._credentials = CredentialSource.static(PROXY_ACCESS_KEY, PROXY_SECRET_KEY)
        self._vault = vault = vault_from(config.vault)
        self._upstream = upstream_from(config.upstream, self._credentials)
        await self._credentials.start()
        await vault.auth.start(config.vault.check_interval)
        self.keys = CachingKeyService(
            vault, config.vault.cache_limits, healthy=lambda: vault.auth.available
        )
        identity = Identity(config, self._credentials, vault.auth)
        await self._upstream.start()
        if config.metadata_cache.enabled:
            self._shared = await SharedCache(config.metadata_cache).__aenter__()
        self.proxy = Proxy(config, self.keys, self._upstream, identity, self._shared)
        self._runner = ProxyServer(self.proxy).runner(**RUNNER_SETTINGS)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._shared is not None:
            await self._shared.__aexit__(None, None, None)
        if self._upstream is not None:
            await self._upstream.close()
        if self._credentials is not None:
            await self._credentials.close()
        if self._vault is not None:
            await self._vault.auth.close()
            self._vault.close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def objects(self) -> ObjectInspector:
        """The proxy's own ObjectInspector (its caches), as its handlers share it."""
        assert self.proxy is not None
        return self.proxy.objects

    @property
    def upstream(self) -> Upstream:
        assert self._upstream is not None
        return self._upstream

    @property
    def client(self) -> Any:
        """boto3 as a workload uses it (made-up keys), one attempt per call."""
        if self._client is None:
            self._client = _boto_session().client(
                "s3",
                endpoint_url=self.endpoint,
                config=BotoConfig(
                    retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}
                ),
            )
        return self._client

    def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> Answered:
        """A raw HTTP request to the proxy (``path`` with its query, already encoded)."""

        async def send() -> Answered:
            async with (
                aiohttp.ClientSession(auto_decompress=False) as session,
                session.request(
                    method,
                    self.endpoint + path,
                    headers={"Authorization": "AWS4-HMAC-SHA256 workload", **(headers or {})},
                    data=body if body or method in ("PUT", "POST") else None,
                ) as resp,
            ):
                received = bytearray()
                try:
                    async for chunk in resp.content.iter_any():
                        received += chunk
                except aiohttp.ClientPayloadError:
                    return Answered(resp.status, resp.headers, bytes(received), False)
                return Answered(resp.status, resp.headers, bytes(received))

        return self.harness.run(send())


class Harness:
    """The loop, the playbook with its store, and the proxies of one test."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.store = Store()
        self.book = Playbook(self.store)
        self._loop = Loop()
        self.proxies: list[InProcProxy] = []
        self.run(self.book.start())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
        """Run a coroutine on the harness's loop (where the proxies live)."""
        return self._loop.run(coro, timeout)

    def proxy(self, **extra: str) -> InProcProxy:
        """A new proxy (fresh caches: another process) with these settings."""
        proxy = InProcProxy(self, extra)
        self.proxies.append(proxy)
        self.run(proxy.start())
        return proxy

    def inspector(self, proxy: InProcProxy) -> ObjectInspector:
        """A fresh ObjectInspector (empty caches) on ``proxy``'s keys and upstream."""
        assert proxy.keys is not None
        return ObjectInspector(proxy.keys, proxy.upstream)

    def close(self) -> None:
        try:
            for proxy in self.proxies:
                if proxy._client is not None:
                    proxy._client.close()  # (no idle connection for the runner to wait on)
                self.run(proxy.stop())
            self.run(self.book.stop())
        finally:
            self._loop.close()


@pytest.fixture
def harness(vault: Vault) -> Iterator[Harness]:
    """A fake upstream with bucket ``b`` and the means to put proxies in front of it; the test
    fails on any request the playbook did not expect."""
    h = Harness(vault)
    h.store.create_bucket("b")
    try:
        yield h
        h.book.check_idle()
    finally:
        h.close()
