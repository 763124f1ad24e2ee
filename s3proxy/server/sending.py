"""Sending decrypted plaintext: the stored bytes of a read plan, fetched from the upstream or
handed over, authenticated segment by segment into the client's response (docs/design.md,
Reading: authenticate, then release)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from s3proxy.core.errors import IntegrityError, S3ProxyError
from s3proxy.core.headers import HeaderPairs
from s3proxy.core.layout import PlanDecryptor, ReadPlan
from s3proxy.core.readplan import ReadAnswer
from s3proxy.core.request import Target
from s3proxy.server.readrules import plaintext_headers
from s3proxy.server.relay import Aborted, BodyResponse, abort, add_headers
from s3proxy.store.objects import ObjectInspector
from s3proxy.store.spans import fetch_span
from s3proxy.upstream import errors as upstream_errors
from s3proxy.upstream.httperrors import UpstreamError
from s3proxy.upstream.response import Response

log = logging.getLogger("s3proxy")


def start_answer(resp: web.StreamResponse, answer: ReadAnswer, source: Mapping[str, str]) -> None:
    """The plaintext answer's status line aside, its headers: the store's response headers as
    the client sees them (``source``, with the plaintext ETag), the answer's own, its range
    and length."""
    add_headers(resp, plaintext_headers(source.items(), answer.etag, answer.hidden_tags))
    add_headers(resp, answer.headers)
    if answer.content_range:
        resp.headers["Content-Range"] = answer.content_range
    resp.content_length = answer.length


async def send_without_body(
    request: web.Request, answer: ReadAnswer, source: Mapping[str, str]
) -> web.StreamResponse:
    """A HEAD's answer, or a GET's with nothing to decrypt (an empty part)."""
    resp = web.StreamResponse(status=answer.status)
    start_answer(resp, answer, source)
    await resp.prepare(request)
    await resp.write_eof()
    return resp


class PlaintextSender:
    def __init__(self, objects: ObjectInspector) -> None:
        self.objects = objects

    async def send_span(
        self,
        request: web.Request,
        target: Target,
        headers: HeaderPairs,
        probe: Response,
        answer: ReadAnswer,
        keys: dict[str, bytes] | None = None,
    ) -> web.StreamResponse:
        """Fetch the stored bytes of the answer's plan from the object the probe saw
        (``If-Match`` its stored ETag; the client's own conditions were checked already) and
        send the plaintext; an answer without a plan has no body to fetch."""
        if answer.plan is None:
            return await send_without_body(request, answer, probe.headers)
        stored_etag = probe.headers.get("ETag")
        span = await fetch_span(self.objects.upstream, target, headers, stored_etag, answer.plan)
        async with span.resp:
            return await self.send_plan(request, span.chunks(), answer, probe.headers, keys=keys)

    async def send_plan(
        self,
        request: web.Request,
        chunks: AsyncIterator[bytes],
        answer: ReadAnswer,
        source: Mapping[str, str],
        *,
        prefix: bytes = b"",
        keys: dict[str, bytes] | None = None,
    ) -> web.StreamResponse:
        """Decrypt the fetched stored bytes into the client's response. The first segment is
        authenticated before the response starts, so most failures become a proper S3 error;
        a later failure cuts the connection short of the announced Content-Length."""
        assert answer.plan is not None  # (an answer with a body to send)
        decrypting = Decrypting(answer.plan, self.objects, {} if keys is None else keys)
        with upstream_errors.reading():
            pending = await decrypting.first(prefix, chunks)
        resp = BodyResponse(status=answer.status)
        start_answer(resp, answer, source)
        await resp.prepare(request)
        await _send_rest(request, resp, pending, chunks, decrypting)
        await resp.write_eof()
        return resp


class Decrypting:
    """A read plan's decryptor fed stored bytes, with the data keys it asks for on the way
    (unwrapped once per request, in ``keys``)."""

    def __init__(self, plan: ReadPlan, objects: ObjectInspector, keys: dict[str, bytes]) -> None:
        self.decryptor = PlanDecryptor(plan)
        self.objects = objects
        self.keys = keys

    async def step(self, data: bytes) -> bytes | bytearray:
        """The plaintext ``data`` completes (authenticated)."""
        decryptor = self.decryptor
        out = decryptor.feed(data)
        if decryptor.needs_key is None:
            if decryptor.unchecked_footers:
                await self._check_footers()
            return out
        held: list[bytes | bytearray] = [out]
        while decryptor.needs_key is not None:
            wrapped = decryptor.needs_key.wrapped_key
            decryptor.provide_key(await self.objects.unwrap(wrapped, self.keys))
            held.append(decryptor.feed(b""))
        if decryptor.unchecked_footers:
            await self._check_footers()
        return b"".join(held)

    async def _check_footers(self) -> None:
        """Footers read of streams whose footer bytes were not known (a layout from the shared
        cache): each must open under its metadata key as that stream's and record what the
        layout says, before the plaintext that came with it goes out."""
        unchecked = self.decryptor.unchecked_footers
        while unchecked:
            stream, found = unchecked[0]
            footer = await self.objects.open_footer(found, stream.header)
            if footer.trailer != stream.record:
                raise IntegrityError("The stored object's footer does not record what was sent.")
            unchecked.pop(0)

    async def first(self, prefix: bytes, chunks: AsyncIterator[bytes]) -> bytes | bytearray:
        """The first authenticated plaintext: read before the response starts, so that most
        failures can still be an S3 error."""
        pending = await self.step(prefix)
        while not pending and not self.decryptor.done:
            chunk = await anext(chunks, None)
            if chunk is None:
                self.decryptor.finish()  # raises: truncated
                break
            pending = await self.step(chunk)
        return pending


async def _send_rest(
    request: web.Request,
    resp: web.StreamResponse,
    pending: bytes | bytearray,
    chunks: AsyncIterator[bytes],
    decrypting: Decrypting,
) -> None:
    """The plaintext after the first, into a response already started: a failure now cuts
    the connection short of the announced Content-Length."""
    try:
        if pending:
            await resp.write(pending)
        async for chunk in chunks:
            out = await decrypting.step(chunk)
            if out:
                await resp.write(out)
        decrypting.decryptor.finish()
    except IntegrityError as exc:
        log.error(
            "integrity error while streaming %s: %s",
            request.path,
            exc.message,
            extra={"integrity": True},
        )
        abort(request)
        raise Aborted() from exc
    except UpstreamError as exc:  # the network, not the stored data
        log.error("upstream broke off while streaming %s (%s)", request.path, type(exc).__name__)
        abort(request)
        raise Aborted() from exc
    except S3ProxyError as exc:  # Vault failed for a later stream
        log.error("read of %s failed mid-body: %s", request.path, exc.message)
        abort(request)
        raise Aborted() from exc
