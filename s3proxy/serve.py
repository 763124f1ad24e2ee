"""Assemble the proxy process from its parts (settings, credentials, Vault, upstream, the
aiohttp application) and run it until it is told to stop; also the process's log format."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from typing import Any

from aiohttp import web

from s3proxy import __version__
from s3proxy.config import Config
from s3proxy.keys.cache import CachingKeyService
from s3proxy.keys.transit import VaultTransit
from s3proxy.server.app import Proxy, build_app
from s3proxy.server.identity import Identity
from s3proxy.upstream.client import Upstream
from s3proxy.upstream.credentials import CredentialSource, resolve

log = logging.getLogger("s3proxy")


def vault_from(config: Config) -> VaultTransit:
    return VaultTransit(
        config.vault_addr,
        config.vault_auth,
        config.transit_key,
        config.transit_mount,
        cacert=config.vault_cacert,
        client_cert=config.vault_client_cert,
        namespace=config.vault_namespace,
        timeout=config.vault_timeout,
    )


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with ``severity`` and ``message`` as log collectors expect."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for extra in ("request_id", "integrity", "upstream_bytes"):
            if hasattr(record, extra):
                entry[extra] = getattr(record, extra)
        if record.exc_info and record.levelno >= logging.ERROR:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp logs a traceback for every connection the proxy cuts on purpose.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    for noisy in ("botocore", "urllib3", "hvac"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def run_proxy(config: Config, ready: asyncio.Event | None = None) -> None:
    """Serve until cancelled or sent SIGTERM/SIGINT."""
    credentials = CredentialSource(lambda: resolve(config.credentials))
    await credentials.start()
    upstream = Upstream(
        config.s3_endpoint, config.s3_region, credentials, ca_bundle=config.s3_ca_bundle
    )
    vault = vault_from(config)
    await vault.auth.start(config.vault_check_interval)
    keys = CachingKeyService(vault, config.cache_limits, healthy=lambda: vault.auth.available)
    identity = Identity(config, credentials, vault.auth)
    await upstream.start()
    runner = web.AppRunner(
        build_app(Proxy(config, keys, upstream, identity)),
        access_log=None,
        handler_cancellation=True,
        max_line_size=16384,
        max_field_size=16384,
        # Bodies are opaque bytes: a gzip object stays gzip (its Content-Encoding is metadata).
        auto_decompress=False,
    )
    await runner.setup()
    site = web.TCPSite(runner, config.listen_host, config.listen_port, reuse_address=True)
    await site.start()
    described = await identity.describe()
    log.info(
        "s3proxy %s listening on %s:%d; upstream %s (region %s); credentials: %s (key %s, "
        "identity %s); vault %s key %s/%s",
        __version__,
        config.listen_host,
        config.listen_port,
        config.s3_endpoint,
        config.s3_region,
        credentials.description,
        described["credentials"]["access_key_id"],
        described["caller_identity"],
        config.vault_addr,
        config.transit_mount,
        config.transit_key,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()
        await upstream.close()
        await credentials.close()
        await vault.auth.close()
        vault.close()
