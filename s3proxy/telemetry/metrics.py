"""Every Prometheus metric of the proxy, in one place (docs/operations.md lists them).

The metrics live in prometheus-client's default registry, so they work unchanged in its
multi-process mode: with ``PROMETHEUS_MULTIPROC_DIR`` set before the process starts, every
process writes its values to files there and :func:`exposition` sums them, whichever process
answers ``/metrics``. Gauges say how they combine across processes (``multiprocess_mode``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

# Seconds: from a cached-key small request (~1 ms) to a multi-GiB stream.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
VAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter(
    "s3proxy_requests",
    "Client requests answered, by S3 operation and HTTP status (0: the connection was cut).",
    ["operation", "status"],
)
REQUEST_DURATION = Histogram(
    "s3proxy_request_duration_seconds",
    "Time from a client request's arrival to the end of its response, by S3 operation.",
    ["operation"],
    buckets=REQUEST_BUCKETS,
)
REQUEST_BYTES = Counter(
    "s3proxy_request_body_bytes",
    "Request body bytes received from clients (as framed on the wire), by S3 operation.",
    ["operation"],
)
RESPONSE_BYTES = Counter(
    "s3proxy_response_body_bytes",
    "Response body bytes sent to clients in completed responses, by S3 operation.",
    ["operation"],
)
IN_FLIGHT = Gauge(
    "s3proxy_requests_in_flight",
    "Client requests being served now.",
    multiprocess_mode="livesum",
)
UPSTREAM_DURATION = Histogram(
    "s3proxy_upstream_request_duration_seconds",
    "Time from sending a request upstream to its response headers, by method and status "
    "(status 0: no answer).",
    ["method", "status"],
    buckets=REQUEST_BUCKETS,
)
VAULT_DURATION = Histogram(
    "s3proxy_vault_request_duration_seconds",
    "Vault calls and their latency, by kind (datakey, decrypt, rewrap, hmac, read key, login, "
    "check) "
    "and outcome (ok, timeout, unreachable, denied, not_found, rejected, error).",
    ["kind", "outcome"],
    buckets=VAULT_BUCKETS,
)
VAULT_UP = Gauge(
    "s3proxy_vault_up",
    "1 if Vault answered the proxy's last reachability check; 0 if not (writes fail closed).",
    multiprocess_mode="livemin",
)
KEY_CACHE_HITS = Counter(
    "s3proxy_key_cache_hits",
    "Data keys served from the proxy's caches without a Vault call, by cache "
    "(datakey: reused for new objects; unwrap: unwrapped for reads).",
    ["cache"],
)
KEY_CACHE_MISSES = Counter(
    "s3proxy_key_cache_misses", "Data keys that needed a Vault call, by cache.", ["cache"]
)
OBJECT_CACHE_HITS = Counter(
    "s3proxy_object_cache_hits",
    "Object lookups answered from the proxy's caches, by cache (layout: an object's streams "
    "and trailers; size: plaintext sizes in listings).",
    ["cache"],
)
OBJECT_CACHE_MISSES = Counter(
    "s3proxy_object_cache_misses", "Object lookups that read from the upstream.", ["cache"]
)
METADATA_CACHE_REQUESTS = Counter(
    "s3proxy_metadata_cache_requests",
    "Operations on the shared metadata cache (Redis/Valkey), by op (get, put, delete) and "
    "outcome (ok; timeout and error: answered as misses; skipped: not tried while the cache is "
    "backed off after a failure).",
    ["op", "outcome"],
)
INTEGRITY_FAILURES = Counter(
    "s3proxy_integrity_failures",
    "Stored objects that failed authentication or did not match their format when read or "
    "completed.",
)
CREDENTIAL_REFRESHES = Counter(
    "s3proxy_credential_refreshes", "Upstream credentials obtained (at start and refreshed)."
)
CREDENTIAL_FAILURES = Counter(
    "s3proxy_credential_refresh_failures", "Attempts to obtain upstream credentials that failed."
)


# Label children looked up once: ``labels()`` takes a lock and builds its key on every call,
# and these are touched on every request (operation, method and status sets are small).
_children: dict[tuple[object, ...], Any] = {}


def _child(metric: Any, *values: str) -> Any:
    key = (metric, *values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def observe_request(
    operation: str, status: int, seconds: float, bytes_in: int, bytes_out: int
) -> None:
    _child(REQUESTS, operation, str(status)).inc()
    _child(REQUEST_DURATION, operation).observe(seconds)
    if bytes_in:
        _child(REQUEST_BYTES, operation).inc(bytes_in)
    if bytes_out:
        _child(RESPONSE_BYTES, operation).inc(bytes_out)


def observe_upstream(method: str, status: int, seconds: float) -> None:
    _child(UPSTREAM_DURATION, method, str(status)).observe(seconds)


@contextmanager
def vault_call(kind: str, outcome_of: Callable[[BaseException], str]) -> Iterator[None]:
    """Times the Vault call in the block; ``outcome_of`` names the outcome of an exception."""
    started = time.monotonic()
    outcome = "ok"
    try:
        yield
    except BaseException as exc:
        outcome = outcome_of(exc)
        raise
    finally:
        VAULT_DURATION.labels(kind, outcome).observe(time.monotonic() - started)


def metadata_cache_request(op: str, outcome: str) -> None:
    _child(METADATA_CACHE_REQUESTS, op, outcome).inc()


def cache_lookup(hits: Counter, misses: Counter, cache: str, hit: bool) -> None:
    _child(hits if hit else misses, cache).inc()


def cache_lookups(hits: Counter, misses: Counter, cache: str, hit: int, missed: int) -> None:
    """Many look-ups at once (a listing page's): ``hit`` found, ``missed`` not."""
    if hit:
        _child(hits, cache).inc(hit)
    if missed:
        _child(misses, cache).inc(missed)


def exposition() -> tuple[bytes, str]:
    """The text ``/metrics`` answers, and its content type; summed over every process of the
    proxy in multi-process mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
