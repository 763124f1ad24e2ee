"""Who may talk to the proxy: the ``Host`` a request names and the ``Origin`` a browser sends.
Pure: header values and settings in, verdicts out (docs/threat-model.md).

A page in the workload's browser can reach ``localhost`` by DNS rebinding (its own name resolved
to 127.0.0.1, so its requests carry its own name as ``Host``) or by cross-origin requests (they
carry ``Origin``). The proxy answers only requests that name it, and cross-origin requests only
from origins it is told to trust; CORS is the proxy's own, never the bucket's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})
# What a browser may read of an allowed cross-origin response besides the simple headers.
EXPOSED_HEADERS = (
    "ETag, Content-Range, Accept-Ranges, Last-Modified, x-amz-version-id, x-amz-request-id, "
    "x-amz-delete-marker, x-amz-mp-parts-count, x-amz-checksum-crc32, x-amz-checksum-crc32c, "
    "x-amz-checksum-crc64nvme, x-amz-checksum-sha1, x-amz-checksum-sha256, x-amz-checksum-type"
)
ALLOWED_METHODS = "GET, HEAD, PUT, POST, DELETE"


def hostname(host: str) -> str:
    """The name in a ``Host`` value, without port or IPv6 brackets, lower-case."""
    value = host.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


def is_loopback(name: str) -> bool:
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allowed(
    host: str | None, virtual_host_suffixes: Iterable[str], allowed: Iterable[str]
) -> bool:
    """Whether a request's ``Host`` names this proxy: a loopback name or address, a
    virtual-hosted bucket under a configured suffix, or a name the operator listed."""
    if host is None or not host.strip():
        return True  # HTTP/1.0 clients send none; a browser always does
    name = hostname(host)
    if is_loopback(name) or name in {a.strip().lower() for a in allowed if a.strip()}:
        return True
    for suffix in virtual_host_suffixes:
        tail = suffix.strip(".").lower()
        if tail and (name == tail or name.endswith("." + tail)):
            return True
    return False


def origin_allowed(origin: str, allowed: Iterable[str]) -> bool:
    """Whether a browser origin (``scheme://host[:port]``) is one the operator trusts (``*``
    trusts every origin)."""
    value = origin.strip().rstrip("/").lower()
    return any(a.strip().rstrip("/").lower() in (value, "*") for a in allowed if a.strip())


def cors_headers(origin: str, requested_headers: str | None = None) -> list[tuple[str, str]]:
    """The response headers that let the page at ``origin`` read a response (and, for a
    preflight, send the method and headers it asked for)."""
    out = [
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Expose-Headers", EXPOSED_HEADERS),
        ("Vary", "Origin"),
    ]
    if requested_headers is not None:
        out += [
            ("Access-Control-Allow-Methods", ALLOWED_METHODS),
            ("Access-Control-Allow-Headers", requested_headers or "*"),
            ("Access-Control-Max-Age", "600"),
        ]
    return out
