"""Who may reach the proxy: its listeners, the HTTPS listener and client authentication."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from s3proxy.config.values import ConfigError, _choice, _listen, _require
from s3proxy.core.access import hostname, is_loopback
from s3proxy.core.sigv4 import parse_credentials_file

if TYPE_CHECKING:  # (cryptography's x509 is imported only where a certificate is made)
    from s3proxy.core.certs import GeneratedCertificate


@dataclass(frozen=True)
class TlsSettings:
    """The HTTPS listener (docs/operations.md, HTTPS); ``listen`` None: none."""

    listen: tuple[str, int] | None = None
    cert_file: str | None = None
    key_file: str | None = None
    ca_out: str | None = None
    ca_bundle_out: str | None = None  # the CA followed by the system's
    # The certificate made at start (no cert_file): made once, before workers start, so that
    # every worker serves the certificate of the CA that was written.
    generated: GeneratedCertificate | None = None


def _check_reach(name: str, host: str, port: int, remote_allowed: bool) -> None:
    if not is_loopback(hostname(host)) and not remote_allowed:
        raise ConfigError(
            f"{name} {host}:{port} is not a loopback address: anything that reaches it "
            "would use the proxy's identity. Listen on 127.0.0.1, or set both "
            "S3PROXY_ALLOW_REMOTE_CLIENTS=true and S3PROXY_CLIENT_AUTH=sigv4 (with "
            "S3PROXY_CLIENT_CREDENTIALS_FILE) so that only holders of workload keys get in."
        )


def _tls(values: Mapping[str, str | None], remote_allowed: bool) -> TlsSettings:
    """The HTTPS listener's settings; each one without the listener is an error, as is a
    certificate without its key, or a CA to write for a certificate the proxy did not make."""
    listen_text = values.get("S3PROXY_TLS_LISTEN")
    cert, key = values.get("S3PROXY_TLS_CERT_FILE"), values.get("S3PROXY_TLS_KEY_FILE")
    ca_out = values.get("S3PROXY_TLS_CA_OUT")
    bundle_out = values.get("S3PROXY_TLS_CA_BUNDLE_OUT")
    outputs = (("S3PROXY_TLS_CA_OUT", ca_out), ("S3PROXY_TLS_CA_BUNDLE_OUT", bundle_out))
    if not listen_text or listen_text.lower() == "off":
        for name in (
            "S3PROXY_TLS_CERT_FILE",
            "S3PROXY_TLS_KEY_FILE",
            "S3PROXY_TLS_CA_OUT",
            "S3PROXY_TLS_CA_BUNDLE_OUT",
        ):
            if values.get(name):
                raise ConfigError(f"{name} needs S3PROXY_TLS_LISTEN")
        return TlsSettings()
    listen = _listen(listen_text, "S3PROXY_TLS_LISTEN")
    _check_reach("S3PROXY_TLS_LISTEN", *listen, remote_allowed)
    plain = _listen(_require(values, "S3PROXY_LISTEN"))
    admin = values.get("S3PROXY_ADMIN_LISTEN") or "off"
    taken = [plain] + ([] if admin.lower() == "off" else [_listen(admin, "S3PROXY_ADMIN_LISTEN")])
    if listen[1] in {p for _, p in taken}:
        raise ConfigError(
            f"S3PROXY_TLS_LISTEN {listen[0]}:{listen[1]} uses the port of another listener"
        )
    if bool(cert) != bool(key):
        raise ConfigError("S3PROXY_TLS_CERT_FILE and S3PROXY_TLS_KEY_FILE go together")
    for name, out in outputs:
        if cert and out:
            raise ConfigError(
                f"{name} is for the certificate the proxy makes; with "
                "S3PROXY_TLS_CERT_FILE the workload trusts the CA that issued that certificate"
            )
        if out and not os.path.isdir(os.path.dirname(os.path.abspath(out))):
            raise ConfigError(f"{name}: no directory for {out!r}")
    for name, path in (("S3PROXY_TLS_CERT_FILE", cert), ("S3PROXY_TLS_KEY_FILE", key)):
        if path and not os.path.isfile(path):
            raise ConfigError(f"{name} is not a readable file: {path!r}")
    return TlsSettings(
        listen=listen, cert_file=cert, key_file=key, ca_out=ca_out, ca_bundle_out=bundle_out
    )


def _client_keys(values: Mapping[str, str | None]) -> dict[str, str] | None:
    """The workload keys when client authentication is on, else None."""
    mode = _choice(values, "S3PROXY_CLIENT_AUTH", ("off", "sigv4"))
    path = values.get("S3PROXY_CLIENT_CREDENTIALS_FILE")
    if mode == "off":
        if path:
            raise ConfigError("S3PROXY_CLIENT_CREDENTIALS_FILE needs S3PROXY_CLIENT_AUTH=sigv4")
        return None
    if not path:
        raise ConfigError("S3PROXY_CLIENT_AUTH=sigv4 needs S3PROXY_CLIENT_CREDENTIALS_FILE")
    try:
        with open(path, encoding="utf-8") as handle:
            keys = parse_credentials_file(handle.read())
    except OSError as exc:
        raise ConfigError(
            f"S3PROXY_CLIENT_CREDENTIALS_FILE: cannot read {path}: {exc.strerror}"
        ) from exc
    except ValueError as exc:
        raise ConfigError(f"S3PROXY_CLIENT_CREDENTIALS_FILE {path}: {exc}") from exc
    if not keys:
        raise ConfigError(f"S3PROXY_CLIENT_CREDENTIALS_FILE {path} holds no keys")
    return keys
