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

from aiohttp import web

from s3proxy import __version__
from s3proxy.config import Config
from s3proxy.keys.cache import CachingKeyService
from s3proxy.keys.transit import VaultTransit, vault_from
from s3proxy.server.admin import Admin
from s3proxy.server.app import Proxy, build_app
from s3proxy.server.identity import Identity
from s3proxy.server.lifecycle import Lifecycle
from s3proxy.server.peers import Peers
from s3proxy.server.tls import (
    bound_server_buffers,
    keep_reloading,
    listener_context,
    prepare,
)
from s3proxy.upstream.client import upstream_from
from s3proxy.upstream.credentials import CredentialSource, resolve

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


async def run_proxy(
    config: Config,
    ready: asyncio.Event | None = None,
    reuse_port: bool = False,
    peers: Peers | None = None,
) -> None:
    """Serve until cancelled, sent SIGTERM/SIGINT or ``POST /quitquitquit``; then drain. A
    worker (``peers`` given) also stops at once on SIGUSR1: another worker ended."""
    lifecycle = Lifecycle()
    loop = asyncio.get_running_loop()
    stops = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}
    if peers is not None:
        stops[signal.SIGUSR1] = ANOTHER_WORKER_ENDED
    for sig, reason in stops.items():
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, lifecycle.request_stop, reason)
    config = prepare(config)  # (a no-op when the workers' supervisor did it)
    tls = None
    if config.tls.listen is not None:
        bound_server_buffers()
        tls = listener_context(config.tls)
    credentials = CredentialSource(lambda: resolve(config.upstream.credentials))
    vault = vault_from(config.vault)
    admin_runner, admin = await _start_admin(config, lifecycle, vault, reuse_port, peers)
    publishing = asyncio.create_task(admin.keep_publishing()) if admin and peers else None
    upstream = upstream_from(config.upstream, credentials)
    runner: web.AppRunner | None = None
    checks: asyncio.Task[None] | None = None
    reloading: asyncio.Task[None] | None = None
    try:
        await credentials.start()
        await vault.auth.start(config.vault.check_interval)
        keys = CachingKeyService(
            vault, config.vault.cache_limits, healthy=lambda: vault.auth.available
        )
        identity = Identity(config, credentials, vault.auth)
        await upstream.start()
        app = build_app(Proxy(config, keys, upstream, identity))
        lifecycle.install(app)
        runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            max_line_size=16384,
            max_field_size=16384,
            # Bodies are opaque bytes: a gzip object stays gzip (its Content-Encoding is metadata).
            auto_decompress=False,
            # Requests still running when the grace period ends are cut at once.
            shutdown_timeout=CUT_TIMEOUT,
        )
        await runner.setup()
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
            if tls[1] is not None:
                reloading = asyncio.create_task(keep_reloading(tls[1]))
        checks = asyncio.create_task(lifecycle.run_startup_checks(credentials, vault))
        await _log_start(config, credentials, identity)
        if ready is not None:
            ready.set()
        reason = await lifecycle.wait_for_stop()
        await _drain(config, lifecycle, runner, sites, reason)
    finally:
        if checks is not None:
            checks.cancel()
        if reloading is not None:
            reloading.cancel()
        if publishing is not None:
            publishing.cancel()
        if runner is not None:
            await runner.cleanup()
        await upstream.close()
        await credentials.close()
        await vault.auth.close()
        vault.close()
        if admin_runner is not None:
            await admin_runner.cleanup()
        log.info("stopped")


async def _start_admin(
    config: Config,
    lifecycle: Lifecycle,
    vault: VaultTransit,
    reuse_port: bool,
    peers: Peers | None,
) -> tuple[web.AppRunner | None, Admin | None]:
    if config.ops.admin_listen is None:
        return None, None
    host, port = config.ops.admin_listen
    admin = Admin(
        lifecycle, lambda: vault.auth.available, config.ops.readiness_requires_vault, peers
    )
    runner = web.AppRunner(admin.app(), access_log=None, shutdown_timeout=CUT_TIMEOUT)
    await runner.setup()
    try:
        await web.TCPSite(
            runner, host, port, reuse_address=True, reuse_port=reuse_port or None
        ).start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(f"S3PROXY_ADMIN_LISTEN {host}:{port}: {exc.strerror or exc}") from exc
    return runner, admin


async def _start_tls(
    config: Config, runner: web.AppRunner, context: ssl.SSLContext, reuse_port: bool
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
    runner: web.AppRunner,
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
