"""Command line: ``s3proxy serve`` runs the proxy; ``s3proxy dev`` adds a local S3 and Vault."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from s3proxy import __version__
from s3proxy.app import Proxy, build_app
from s3proxy.config import Config, ConfigError, add_flags, flag_values, load
from s3proxy.credentials import CredentialSource, resolve
from s3proxy.identity import Identity
from s3proxy.keycache import CachingKeyService
from s3proxy.tools import decrypt, rewrap, vault_from
from s3proxy.upstream import Upstream

log = logging.getLogger("s3proxy")


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


def _serve(args: argparse.Namespace) -> int:
    try:
        config = load(flags=flag_values(args))
    except ConfigError as exc:
        print(f"s3proxy: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    try:
        asyncio.run(run_proxy(config))
    except OSError as exc:
        print(
            f"s3proxy: cannot listen on {config.listen_host}:{config.listen_port}: {exc}",
            file=sys.stderr,
        )
        return 1
    return 0


def _config(args: argparse.Namespace) -> Config | None:
    try:
        return load(flags=flag_values(args))
    except ConfigError as exc:
        print(f"s3proxy: configuration error: {exc}", file=sys.stderr)
        return None


def _decrypt(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return 2
    setup_logging("WARNING")
    src = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115
    dst = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
    try:
        return asyncio.run(decrypt(config, src, dst))
    finally:
        src.close()
        dst.close()


def _rewrap(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return 2
    setup_logging("WARNING")
    return asyncio.run(rewrap(config, args.bucket, args.prefix, args.start_after))


def _dev(args: argparse.Namespace) -> int:
    from s3proxy.devstack import run_dev

    return run_dev(port=args.port, bucket=args.bucket)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="s3proxy", description=__doc__)
    parser.add_argument("--version", action="version", version=f"s3proxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the proxy (configured by environment or flags)")
    add_flags(serve)
    serve.set_defaults(func=_serve)
    dec = sub.add_parser(
        "decrypt",
        help="break-glass: decrypt an object downloaded raw from the bucket, with Vault only",
    )
    add_flags(dec)
    dec.add_argument("--in", dest="input", default="-", help="stored object (default stdin)")
    dec.add_argument("--out", dest="output", default="-", help="plaintext (default stdout)")
    dec.set_defaults(func=_decrypt)
    rew = sub.add_parser(
        "rewrap",
        help="re-wrap the data keys of stored objects with the latest transit key version",
    )
    add_flags(rew)
    rew.add_argument("--bucket", required=True)
    rew.add_argument("--prefix", default="", help="only objects under this prefix")
    rew.add_argument("--start-after", default="", help="resume after this key")
    rew.set_defaults(func=_rewrap)
    dev = sub.add_parser(
        "dev", help="run the proxy with a local moto S3 and OpenBao Vault, for trying it out"
    )
    dev.add_argument("--port", type=int, default=8190, help="proxy port (default 8190)")
    dev.add_argument("--bucket", default="demo", help="bucket to create (default demo)")
    dev.set_defaults(func=_dev)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
