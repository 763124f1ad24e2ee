"""The ``s3proxy webhook`` subcommand: its flags (each also an ``S3PROXY_WEBHOOK_*`` variable)
and its start."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from s3proxy.k8s import settings

OWN = (
    ("--listen", "S3PROXY_WEBHOOK_LISTEN", "HOST:PORT to serve HTTPS on", "127.0.0.1:8443"),
    ("--tls-cert", "S3PROXY_WEBHOOK_TLS_CERT", "certificate chain (PEM), re-read on change", None),
    ("--tls-key", "S3PROXY_WEBHOOK_TLS_KEY", "its private key (PEM), re-read on change", None),
    ("--config", "S3PROXY_WEBHOOK_CONFIG", "JSON file of sidecar defaults {name: value}", None),
)


def add_webhook_command(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "webhook",
        help="run the Kubernetes admission webhook that injects the proxy into annotated pods",
    )
    for flag, env, text, default in OWN:
        shown = f" (default {default})" if default else ""
        parser.add_argument(flag, dest=env, help=f"{text}; env {env}{shown}")
    group = parser.add_argument_group("sidecar defaults (pod annotations s3proxy.io/<name> win)")
    settings.add_flags(group)
    parser.set_defaults(func=_webhook)


def _value(args: argparse.Namespace, env: str, default: str | None) -> str | None:
    given: str | None = getattr(args, env, None)
    return given if given is not None else os.environ.get(env) or default


def _webhook(args: argparse.Namespace) -> int:
    from s3proxy.telemetry.logs import setup_logging

    listen = _value(args, "S3PROXY_WEBHOOK_LISTEN", "127.0.0.1:8443") or ""
    host, _, port = listen.rpartition(":")
    cert = _value(args, "S3PROXY_WEBHOOK_TLS_CERT", None)
    key = _value(args, "S3PROXY_WEBHOOK_TLS_KEY", None)
    if not host or not port.isdigit() or not cert or not key:
        print(
            "s3proxy webhook: configuration error: S3PROXY_WEBHOOK_LISTEN must be HOST:PORT and "
            "S3PROXY_WEBHOOK_TLS_CERT and S3PROXY_WEBHOOK_TLS_KEY are required",
            file=sys.stderr,
        )
        return 2
    flags = {s.env: getattr(args, s.env, None) for s in settings.SIDECAR_SETTINGS}
    try:
        defaults = settings.load_defaults(
            os.environ, flags, _value(args, "S3PROXY_WEBHOOK_CONFIG", None)
        )
    except settings.SettingsError as exc:
        print(f"s3proxy webhook: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging("INFO")
    from s3proxy.k8s.webhook import WebhookConfig, run_webhook  # only this command needs it

    config = WebhookConfig(host.strip("[]"), int(port), cert, key, defaults)
    try:
        asyncio.run(run_webhook(config))
    except OSError as exc:
        print(f"s3proxy webhook: cannot start on {listen}: {exc}", file=sys.stderr)
        return 1
    return 0
