"""What the upstream HTTP client raises (the proxy's own client: upstream/pool.py and
upstream/connection.py). :mod:`s3proxy.upstream.errors` turns these into the proxy's S3 errors;
the places that relay a body already started catch :class:`UpstreamError` and cut the
client's connection instead."""

from __future__ import annotations


class UpstreamError(Exception):
    """Any failure of an exchange with the upstream (not an HTTP error status: those are
    answers)."""


class UpstreamConnectionError(UpstreamError):
    """No answer: the upstream could not be reached (name, refusal, TLS, proxy), or the
    connection failed before the response's head was complete."""


class UpstreamTimeout(UpstreamConnectionError, TimeoutError):
    """No connection in time (``CONNECT_TIMEOUT`` with the wait for a pooled one, or the TCP
    and TLS set-up), or no byte of the response for the read timeout."""


class UpstreamProtocolError(UpstreamConnectionError):
    """The upstream answered something that is not HTTP/1.1 (a malformed head or body)."""


class UpstreamPayloadError(UpstreamError):
    """The response's body broke off before its end (fewer bytes than announced, a chunk cut
    short, a connection reset)."""


class StaleConnection(UpstreamConnectionError):
    """A kept-alive connection the upstream had closed: it ended before any byte of the
    response. The request is sent again once, on a new connection, when that is safe."""
