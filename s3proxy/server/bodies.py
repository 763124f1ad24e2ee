"""Reading request bodies, bounded in time and memory (docs/design.md, Bounds under hostile
load).

Every body the proxy reads comes through :func:`body_chunks`: a read that waits longer than
the idle timeout for the client's next bytes, or a held body not complete within its overall
timeout, ends the request with S3's ``RequestTimeout``; a connection that breaks mid-body with
``IncompleteBody``. Bodies held whole in memory first reserve their bytes from the process's
:class:`BodyBudget`; a request that finds it spent gets ``503 SlowDown`` at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from s3proxy.config import BodySettings
from s3proxy.core.errors import IncompleteBody, RequestTimeout, SlowDown


class BodyBudget:
    """Bytes of request bodies the process holds in memory at once, shared by its requests;
    each request's share is given back when it ends (:meth:`release`)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def reserve(self, request: web.Request, size: int) -> None:
        """Take ``size`` bytes for ``request``, or raise :class:`SlowDown` (nothing taken)."""
        if self.used + size > self.limit:
            raise SlowDown()
        self.used += size
        request[_HELD] = request.get(_HELD, 0) + size

    def release(self, request: web.Request) -> None:
        self.used -= request.pop(_HELD, 0)


class BodyRules:
    """What a request's body reads obey: the timeouts and the process's budget."""

    def __init__(self, settings: BodySettings) -> None:
        self.idle_timeout = settings.idle_timeout
        self.held_timeout = settings.held_timeout
        self.budget = BodyBudget(settings.memory)


RULES = web.RequestKey("s3proxy.body_rules", BodyRules)
_HELD = web.RequestKey("s3proxy.body_bytes_held", int)
_DEFAULT = BodyRules(BodySettings())


def rules(request: web.Request) -> BodyRules:
    return request.get(RULES) or _DEFAULT


def reserve(request: web.Request, size: int) -> None:
    """Reserve ``size`` bytes of the budget for a body ``request`` holds whole."""
    rules(request).budget.reserve(request, size)


async def body_chunks(
    request: web.Request, size: int, *, held: bool = False
) -> AsyncIterator[bytes]:
    """The body in pieces of at most ``size`` bytes. Each piece must arrive within the idle
    timeout; a ``held`` body (one the caller keeps in memory) must be complete within the
    overall timeout too, counted from the first read."""
    content = request.content
    limits = rules(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.held_timeout if held else None
    while True:
        try:
            piece = content.read_nowait(size)  # no timer while bytes are already here
            if not piece:
                if content.at_eof():
                    return
                when = loop.time() + limits.idle_timeout
                async with asyncio.timeout_at(when if deadline is None else min(when, deadline)):
                    piece = await content.read(size)
                if not piece:
                    return
        except TimeoutError as exc:
            raise RequestTimeout() from exc
        except (aiohttp.ClientPayloadError, ConnectionError) as exc:
            raise IncompleteBody("The request body was cut off.") from exc
        yield piece
