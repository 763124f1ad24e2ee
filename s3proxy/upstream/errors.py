"""The one place where the upstream client's errors (upstream/httperrors.py) become the
proxy's own (as httpcore's ``map_exceptions``): a request that could not be sent or answered
in time, and a response that broke off while its body was read, are ``503``-class
:class:`UpstreamUnavailable`, never a bare 500. (A response that breaks off after the client's
answer has started cannot become an error document: those places cut the client's connection
instead, server/relay.py and server/sending.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from s3proxy.core.errors import UpstreamUnavailable
from s3proxy.upstream.httperrors import UpstreamConnectionError, UpstreamError


@contextmanager
def sending() -> Iterator[None]:
    """Around sending a request and waiting for its response's head."""
    try:
        yield
    except UpstreamConnectionError as exc:
        raise UpstreamUnavailable(
            f"The upstream object store could not be reached ({type(exc).__name__})."
        ) from exc
    except TimeoutError as exc:
        raise UpstreamUnavailable("The upstream object store timed out.") from exc


@contextmanager
def reading() -> Iterator[None]:
    """Around reading a response's body: fewer bytes than it announced, or a connection that
    failed, is the network's doing, not the stored data's."""
    try:
        yield
    except (UpstreamError, asyncio.IncompleteReadError) as exc:
        raise UpstreamUnavailable("The upstream response broke off.") from exc
