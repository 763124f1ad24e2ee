"""The shared metadata cache's settings (docs/metadata.md, Shared cache): where Redis or Valkey
is, how the proxy logs in and trusts it, how long it waits and how long entries live."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from s3proxy.config.values import ConfigError, _number, redact_url

# Far longer than a healthy in-cluster Redis takes (well under 1 ms; a TLS handshake a few ms),
# and longer than a sidecar's CPU throttling stalls it (a CFS period is 100 ms): a timeout skips
# the cache for a while (docs/metadata.md), so it must not trip on a healthy cache; only a hung
# one costs it, once per back-off.
DEFAULT_TIMEOUT = 0.25
# Entries cannot go stale (each opens only for the object it was written for), so the TTL only
# clears entries of objects since deleted or rewritten, and names of a retired metadata key: a
# week keeps anything read weekly (a weekly backup's listing) warm.
DEFAULT_TTL = 7 * 24 * 3600


@dataclass(frozen=True)
class MetadataCacheSettings:
    """Redis or Valkey shared by the proxies of a transit key; ``url`` None: no shared cache.
    Neither the URL (it may hold a password) nor the password is part of the repr."""

    url: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None  # CA bundle for a rediss:// server's certificate
    timeout: float = DEFAULT_TIMEOUT  # seconds per cache operation, connecting included
    ttl: int = DEFAULT_TTL  # seconds an entry lives

    @property
    def enabled(self) -> bool:
        return self.url is not None

    @property
    def shown_url(self) -> str:
        """The URL fit for logs: without its password."""
        return redact_url(self.url or "")


def _metadata_cache(values: Mapping[str, str | None]) -> MetadataCacheSettings:
    url = values.get("S3PROXY_METADATA_CACHE_URL") or None
    password_file = values.get("S3PROXY_METADATA_CACHE_PASSWORD_FILE") or None
    ca_file = values.get("S3PROXY_METADATA_CACHE_CA_FILE") or None
    timeout = _number(values, "S3PROXY_METADATA_CACHE_TIMEOUT", positive=True)
    if not math.isfinite(timeout):
        raise ConfigError("S3PROXY_METADATA_CACHE_TIMEOUT must be a finite number")
    ttl_text = values.get("S3PROXY_METADATA_CACHE_TTL_SECONDS") or ""
    if not ttl_text.isdigit() or int(ttl_text) < 1:
        raise ConfigError(
            f"S3PROXY_METADATA_CACHE_TTL_SECONDS must be a positive integer, got {ttl_text!r}"
        )
    if url is None:
        if password_file or ca_file:
            raise ConfigError(
                "S3PROXY_METADATA_CACHE_PASSWORD_FILE and S3PROXY_METADATA_CACHE_CA_FILE need "
                "S3PROXY_METADATA_CACHE_URL"
            )
        return MetadataCacheSettings(timeout=timeout, ttl=int(ttl_text))
    has_password = _check_url(url)
    if ca_file is not None:
        if not url.startswith("rediss://"):
            raise ConfigError("S3PROXY_METADATA_CACHE_CA_FILE needs a rediss:// URL")
        if not os.path.isfile(ca_file):
            raise ConfigError(f"S3PROXY_METADATA_CACHE_CA_FILE is not a readable file: {ca_file!r}")
    if password_file is not None and has_password:
        raise ConfigError(
            "give the metadata cache's password in S3PROXY_METADATA_CACHE_URL or in "
            "S3PROXY_METADATA_CACHE_PASSWORD_FILE, not both"
        )
    return MetadataCacheSettings(
        url=url,
        password=_password(password_file) if password_file else None,
        ca_file=ca_file,
        timeout=timeout,
        ttl=int(ttl_text),
    )


def _check_url(url: str) -> bool:
    """Check a redis:// or rediss:// URL (user and password allowed, a database number as its
    path); whether it holds a password. Messages show it without the password."""
    name, shown = "S3PROXY_METADATA_CACHE_URL", redact_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigError(f"{name} must be a redis:// or rediss:// URL, got {shown!r}")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConfigError(f"{name} has an invalid port: {shown!r}") from exc
    database = parts.path.removeprefix("/")
    if (database and not database.isdigit()) or parts.query or parts.fragment:
        raise ConfigError(f"{name} takes no options; its path is a database number, got {shown!r}")
    return bool(parts.password)


def _password(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            password = handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"S3PROXY_METADATA_CACHE_PASSWORD_FILE: cannot read {path}") from exc
    if not password:
        raise ConfigError(f"S3PROXY_METADATA_CACHE_PASSWORD_FILE: {path} is empty")
    return password
