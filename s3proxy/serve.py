"""Assemble the proxy process from its parts (settings, credentials, Vault, upstream, the
aiohttp application, the admin listener), run it until it is told to stop, and drain it
(docs/operations.md, Shutdown)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from aiohttp import web

from s3proxy import __version__
from s3proxy.config import Config
from s3proxy.keys.cache import CachingKeyService
from s3proxy.keys.transit import VaultTransit, vault_from
from s3proxy.server.admin import Admin
from s3proxy.server.app import Proxy
from s3proxy.server.identity import Identity
from s3proxy.server.lifecycle import Lifecycle
from s3proxy.server.peers import Peers
from s3proxy.server.shell import ProxyServer
from s3proxy.server.tls import (
    CertificateFiles,
    bound_server_buffers,
    keep_reloading,
    listener_context,
    prepare,
)
from s3proxy.upstream.client import upstream_from
from s3proxy.upstream.credentials import CredentialSource, resolve

if TYPE_CHECKING:  # (redis is imported only where a shared cache is configured)
    from s3proxy.store.sharedcache import SharedCache

log = logging.getLogger("s3proxy")

__all__ = ["run_proxy"]

CUT_TIMEOUT = 0.5  # seconds a cut request's handler may take to unwind
# The stop reason of a worker whose sibling ended (/quitquitquit or a crash): no shutdown delay.
ANOTHER_WORKER_ENDED = "another worker ended"


# Container allocations between collections of the youngest generation (CPython: 700).
GC_YOUNG_THRESHOLD = 10_000


def settle_collector() -> None:
    """Before serving: the objects made at start (modules, settings) are left out of every
    later collection, and the youngest generation is collected every 10,000 net
    allocations instead of 700 (docs/performance-history.md, Changes and what they bought:
    the collector's share of a small request)."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
    gc.enable()  # (off while the modules loaded: s3proxy.workers.serve_one)


async def run_proxy(
    config: Config,
    ready: asyncio.Event | None = None,
    reuse_port: bool = False,
    peers: Peers | None = None,
) -> None:
    """Serve until cancelled, sent SIGTERM/SIGINT or ``POST /quitquitquit``; then drain. A
    worker (``peers`` given) also stops at once on SIGUSR1: another worker ended.

    Each resource is released by the exit stack it was entered on, in the reverse order of
    acquisition, however the run ends."""
    lifecycle = Lifecycle()
    _stop_on_signals(lifecycle, worker=peers is not None)
    config = prepare(config)  # (a no-op when the workers' supervisor did it)
    tls = None
    if config.tls.listen is not None:
        bound_server_buffers()
        tls = listener_context(config.tls)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(log.info, "stopped")
        vault = vault_from(config.vault)
        stack.callback(vault.close)
        admin = await _start_admin(stack, config, lifecycle, vault, reuse_port, peers)
        if admin is not None and peers is not None:
            _in_background(stack, admin.keep_publishing())
        credentials = CredentialSource(lambda: resolve(config.upstream.credentials))
        await _start(stack, credentials.start(), credentials.close)
        await _start(stack, vault.auth.start(config.vault.check_interval), vault.auth.close)
        keys = CachingKeyService(
            vault, config.vault.cache_limits, healthy=lambda: vault.auth.available
        )
        identity = Identity(config, credentials, vault.auth)
        upstream = upstream_from(config.upstream, credentials)
        await _start(stack, upstream.start(), upstream.close)
        shared_cache = await _shared_cache(stack, config)
        proxy = Proxy(config, keys, upstream, identity, shared_cache)
        runner = await _start_runner(stack, ProxyServer(proxy, lifecycle))
        sites = await _start_sites(config, runner, tls, reuse_port)
        if tls is not None and tls[1] is not None:
            _in_background(stack, keep_reloading(tls[1]))
        _in_background(stack, lifecycle.run_startup_checks(credentials, vault))
        await _log_start(config, credentials, identity)
        if ready is not None:
            ready.set()
        reason = await lifecycle.wait_for_stop()
        await _drain(config, lifecycle, runner, sites, reason)


async def _shared_cache(stack: contextlib.AsyncExitStack, config: Config) -> SharedCache | None:
    """The shared metadata cache, if one is configured (redis is imported only then)."""
    if not config.metadata_cache.enabled:
        return None
    from s3proxy.store.sharedcache import SharedCache

    return await stack.enter_async_context(SharedCache(config.metadata_cache))


def _stop_on_signals(lifecycle: Lifecycle, worker: bool) -> None:
    """SIGTERM and SIGINT ask the lifecycle to stop; SIGUSR1 too in a worker."""
    loop = asyncio.get_running_loop()
    stops = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}
    if worker:
        stops[signal.SIGUSR1] = ANOTHER_WORKER_ENDED
    for sig, reason in stops.items():
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, lifecycle.request_stop, reason)


async def _start(
    stack: contextlib.AsyncExitStack,
    starting: Awaitable[None],
    close: Callable[[], Awaitable[None]],
) -> None:
    """Start a resource whose ``close`` is pushed first, so a failed start is closed too."""
    stack.push_async_callback(close)
    await starting


def _in_background(stack: contextlib.AsyncExitStack, work: Coroutine[Any, Any, None]) -> None:
    """A background task, cancelled when the stack unwinds."""
    stack.callback(asyncio.create_task(work).cancel)


# How the proxy is served (the test suite's in-process proxy serves it alike).
RUNNER_SETTINGS: dict[str, Any] = {
    "access_log": None,
    "handler_cancellation": True,
    "max_line_size": 16384,
    "max_field_size": 16384,
    # Bodies are opaque bytes: a gzip object stays gzip (its Content-Encoding is metadata).
    "auto_decompress": False,
    # Requests still running when the grace period ends are cut at once.
    "shutdown_timeout": CUT_TIMEOUT,
}


async def _start_runner(stack: contextlib.AsyncExitStack, server: ProxyServer) -> web.ServerRunner:
    runner = server.runner(**RUNNER_SETTINGS)
    await _start(stack, runner.setup(), runner.cleanup)
    return runner


async def _start_sites(
    config: Config,
    runner: web.BaseRunner,
    tls: tuple[ssl.SSLContext, CertificateFiles | None] | None,
    reuse_port: bool,
) -> list[web.TCPSite]:
    """The S3 listener, and the HTTPS one if configured; the runner's cleanup stops them."""
    site = web.TCPSite(
        runner,
        config.listen_host,
        config.listen_port,
        reuse_address=True,
        reuse_port=reuse_port or None,
    )
    await site.start()
    sites = [site]
    if tls is not None:
        sites.append(await _start_tls(config, runner, tls[0], reuse_port))
    return sites


async def _start_admin(
    stack: contextlib.AsyncExitStack,
    config: Config,
    lifecycle: Lifecycle,
    vault: VaultTransit,
    reuse_port: bool,
    peers: Peers | None,
) -> Admin | None:
    if config.ops.admin_listen is None:
        return None
    host, port = config.ops.admin_listen
    admin = Admin(
        lifecycle, lambda: vault.auth.available, config.ops.readiness_requires_vault, peers
    )
    runner = web.AppRunner(admin.app(), access_log=None, shutdown_timeout=CUT_TIMEOUT)
    await _start(stack, runner.setup(), runner.cleanup)
    try:
        await web.TCPSite(
            runner, host, port, reuse_address=True, reuse_port=reuse_port or None
        ).start()
    except OSError as exc:
        raise OSError(f"S3PROXY_ADMIN_LISTEN {host}:{port}: {exc.strerror or exc}") from exc
    return admin


async def _start_tls(
    config: Config, runner: web.BaseRunner, context: ssl.SSLContext, reuse_port: bool
) -> web.TCPSite:
    """The HTTPS listener: the same application behind TLS (s3proxy/server/tls.py)."""
    assert config.tls.listen is not None
    host, port = config.tls.listen
    site = web.TCPSite(
        runner,
        host,
        port,
        ssl_context=context,
        reuse_address=True,
        reuse_port=reuse_port or None,
    )
    try:
        await site.start()
    except OSError as exc:
        raise OSError(f"S3PROXY_TLS_LISTEN {host}:{port}: {exc.strerror or exc}") from exc
    return site


async def _drain(
    config: Config,
    lifecycle: Lifecycle,
    runner: web.BaseRunner,
    sites: list[web.TCPSite],
    reason: str,
) -> None:
    """Readiness already fails. Keep serving for the shutdown delay (not after
    ``/quitquitquit``: the workload said it is done), close the listener, then give requests in
    flight the grace period."""
    delay = 0.0 if reason in ("quitquitquit", ANOTHER_WORKER_ENDED) else config.ops.shutdown_delay
    grace = config.ops.shutdown_grace
    log.info(
        "shutting down (%s): listener closes in %.1fs, then requests in flight have %.1fs",
        reason,
        delay,
        grace,
    )
    if delay:
        await lifecycle.pause(delay)
    # Only the listener closes: aiohttp's own connection shutdown would stop reading the bodies
    # of requests in flight. Connections close after their current response instead.
    for site in sites:
        await site.stop()
    if not await lifecycle.wait_idle(grace):
        log.warning(
            "shutdown grace period (%.1fs) over: cutting %d requests in flight",
            grace,
            lifecycle.in_flight,
        )


async def _log_start(config: Config, credentials: CredentialSource, identity: Identity) -> None:
    described = await identity.describe()
    admin = config.ops.admin_listen
    tls = config.tls.listen
    log.info(
        "s3proxy %s listening on %s:%d (https %s, admin %s); upstream %s (region %s); "
        "credentials: %s (key %s, identity %s); vault %s key %s/%s",
        __version__,
        config.listen_host,
        config.listen_port,
        f"{tls[0]}:{tls[1]}" if tls else "off",
        f"{admin[0]}:{admin[1]}" if admin else "off",
        config.upstream.endpoint,
        config.upstream.region,
        credentials.description,
        described["credentials"]["access_key_id"],
        described["caller_identity"],
        config.vault.addr,
        config.vault.transit_mount,
        config.vault.transit_key,
    )
