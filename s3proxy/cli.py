"""Command line: ``s3proxy serve`` runs the proxy; ``s3proxy dev`` adds a local S3 and Vault."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

from s3proxy import __version__
from s3proxy.config import Config, ConfigError, add_flags, flag_values, load
from s3proxy.k8s.command import add_webhook_command
from s3proxy.telemetry.logs import setup_logging

# Each command imports what it runs when it runs (docs/performance.md, Start): a process pays
# for its own command only.

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

log = logging.getLogger("s3proxy")


def _serve(args: argparse.Namespace) -> int:
    from s3proxy.workers import serve as serve_with_workers

    try:
        config = load(flags=flag_values(args))
    except ConfigError as exc:
        print(f"s3proxy: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.ops.log_format)
    return serve_with_workers(config)


def _config(args: argparse.Namespace) -> Config | None:
    try:
        return load(flags=flag_values(args))
    except ConfigError as exc:
        print(f"s3proxy: configuration error: {exc}", file=sys.stderr)
        return None


def _decrypt(args: argparse.Namespace) -> int:
    from s3proxy.ops.tools import DecryptOptions, decrypt

    config = _config(args)
    if config is None:
        return 2
    setup_logging("WARNING")
    options = DecryptOptions(
        bucket=args.bucket,
        key=args.key,
        version_id=args.version_id,
        manifest=args.manifest,
        require_binding=args.require_binding,
    )
    output = None if args.output == "-" else Path(args.output)
    try:
        src = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"s3proxy decrypt: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(decrypt(config, src, output, options))
    finally:
        src.close()


def _rewrap(args: argparse.Namespace) -> int:
    from s3proxy.ops.walk import WalkOptions, rewrap

    config = _config(args)
    if config is None:
        return 2
    setup_logging("WARNING")
    if args.concurrency < 1:
        print("s3proxy rewrap: --concurrency must be at least 1", file=sys.stderr)
        return 2
    options = WalkOptions(
        bucket=args.bucket,
        prefix=args.prefix,
        start_after=args.start_after,
        concurrency=args.concurrency,
        dry_run=args.dry_run,
        state=Path(args.state) if args.state else None,
        verbose=args.verbose,
    )
    return asyncio.run(rewrap(config, options))


def _check(args: argparse.Namespace) -> int:
    from s3proxy.ops.check import run_checks

    config = _config(args)
    if config is None:
        return 2
    setup_logging("CRITICAL")  # the checks say what failed, one line each
    return asyncio.run(run_checks(config, args.bucket or [], args.write_test))


def _dev(args: argparse.Namespace) -> int:
    from s3proxy.devstack import run_dev

    return run_dev(port=args.port, bucket=args.bucket, tls_port=args.tls_port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="s3proxy", description=__doc__)
    parser.add_argument("--version", action="version", version=f"s3proxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    _add_decrypt(sub)
    _add_rewrap(sub)
    _add_check(sub)
    _add_dev(sub)
    add_webhook_command(sub)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def _add_serve(sub: SubParsers) -> None:
    """s3proxy serve"""
    serve = sub.add_parser("serve", help="run the proxy (configured by environment or flags)")
    add_flags(serve)
    serve.set_defaults(func=_serve)


def _add_decrypt(sub: SubParsers) -> None:
    """s3proxy decrypt"""
    dec = sub.add_parser(
        "decrypt",
        help="break-glass: decrypt an object downloaded raw from the bucket, with Vault only",
    )
    add_flags(dec)
    dec.add_argument("--in", dest="input", default="-", help="stored object (default stdin)")
    dec.add_argument(
        "--out",
        dest="output",
        default="-",
        help="plaintext (default stdout); written only once the whole object verified",
    )
    dec.add_argument("--bucket", help="the object's bucket: checks its name binding")
    dec.add_argument("--key", help="the object's key: checks its name binding")
    dec.add_argument("--version-id", help="with --bucket and --key: the version's tags")
    dec.add_argument(
        "--manifest",
        help="a multipart object's s3proxy-manifest tag value (default: read from the store "
        "with --bucket and --key)",
    )
    dec.add_argument(
        "--require-binding",
        action="store_true",
        help="refuse streams not bound to --bucket and --key (as a proxy with "
        "S3PROXY_BIND_OBJECT_NAMES=true does)",
    )
    dec.set_defaults(func=_decrypt)


def _add_rewrap(sub: SubParsers) -> None:
    """s3proxy rewrap"""
    rew = sub.add_parser(
        "rewrap",
        help="re-wrap the data keys of stored objects with the latest transit key version",
    )
    add_flags(rew)
    rew.add_argument("--bucket", required=True)
    rew.add_argument("--prefix", default="", help="only objects under this prefix")
    rew.add_argument("--start-after", default="", help="only objects after this key")
    rew.add_argument(
        "--concurrency", type=int, default=8, help="objects rewrapped at once (default 8)"
    )
    rew.add_argument(
        "--dry-run", action="store_true", help="report what would be rewrapped, change nothing"
    )
    rew.add_argument("--verbose", action="store_true", help="a line per object and its outcome")
    rew.add_argument(
        "--state",
        help="file keeping the resume point: an interrupted run continues where it stopped "
        "(removed once a run completes)",
    )
    rew.set_defaults(func=_rewrap)


def _add_check(sub: SubParsers) -> None:
    """s3proxy check"""
    chk = sub.add_parser(
        "check",
        help="try the configuration once: Vault login, transit key, upstream credentials, "
        "buckets; exit status 1 if anything fails",
    )
    add_flags(chk)
    chk.add_argument(
        "--bucket", action="append", help="a bucket that must answer HeadBucket (repeatable)"
    )
    chk.add_argument(
        "--write-test",
        action="store_true",
        help="also write an object through the proxy's encryption, read it back and delete it",
    )
    chk.set_defaults(func=_check)


def _add_dev(sub: SubParsers) -> None:
    """s3proxy dev"""
    dev = sub.add_parser(
        "dev", help="run the proxy with a local moto S3 and OpenBao Vault, for trying it out"
    )
    dev.add_argument("--port", type=int, default=8190, help="proxy port (default 8190)")
    dev.add_argument(
        "--tls-port", type=int, default=8443, help="the proxy's HTTPS port (default 8443)"
    )
    dev.add_argument("--bucket", default="demo", help="bucket to create (default demo)")
    dev.set_defaults(func=_dev)


if __name__ == "__main__":
    sys.exit(main())
