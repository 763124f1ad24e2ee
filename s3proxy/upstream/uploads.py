"""Uploads to the store (PutObject and UploadPart bodies the proxy wrote) in the form the store
verifies: chosen by ``S3PROXY_UPSTREAM_CHECKSUM``, or with ``auto`` learned once per upstream by
:mod:`s3proxy.upstream.probe` before the first upload, and remembered."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import cast

from s3proxy.core.errors import UpstreamUnavailable
from s3proxy.core.request import Target
from s3proxy.upstream import probe
from s3proxy.upstream.client import Upstream
from s3proxy.upstream.forms import Choice, Chunk, Form, fixed_choice, stream_form, whole_headers
from s3proxy.upstream.httperrors import UpstreamError
from s3proxy.upstream.response import Response

log = logging.getLogger("s3proxy")

AUTO_TRAILER = "crc32"  # the trailer ``auto`` tries (every store that takes trailers knows it)
RETRY_AFTER = 60.0  # seconds before an inconclusive probe is tried again
PROBE_TIMEOUT = 15.0  # seconds the probe may take (the uploads waiting for it wait as long)
UNDECIDED = Choice(Form.PLAIN)  # what uploads use while the form is not known


class Uploads:
    """Sends upload bodies to one upstream in the form it takes."""

    def __init__(self, upstream: Upstream, setting: str) -> None:
        self.upstream = upstream
        self.choice = fixed_choice(setting)  # None: not learned yet
        self._lock = asyncio.Lock()
        self._retry_at = 0.0

    async def choose(self, target: Target) -> Choice:
        """The form for an upload to ``target``, probing the store once if it is not known."""
        if self.choice is not None:
            return self.choice
        async with self._lock:  # one probe; the uploads that come meanwhile wait for it
            if self.choice is not None:
                return self.choice
            if time.monotonic() < self._retry_at:
                return UNDECIDED
            try:
                learning = probe.learn(self.upstream, target, AUTO_TRAILER)
                self.choice = await asyncio.wait_for(learning, PROBE_TIMEOUT)
                return self.choice
            except probe.Inconclusive as exc:
                if exc.soon:  # (the client gets the store's answer about its bucket or key)
                    log.info("upload form of %s not learned yet: %s", self.upstream.endpoint, exc)
                    return UNDECIDED
                failure: object = exc
            except (UpstreamUnavailable, UpstreamError) as exc:
                failure = exc
            except TimeoutError:
                failure = f"no answer in {PROBE_TIMEOUT:.0f} s"
            self._retry_at = time.monotonic() + RETRY_AFTER
            log.warning(
                "could not learn which upload form %s takes (%s); uploading without a "
                "checksum for %.0f s",
                self.upstream.endpoint,
                failure,
                RETRY_AFTER,
            )
            return UNDECIDED

    async def put_stream(
        self,
        target: Target,
        headers: Iterable[tuple[str, str]],
        length: int,
        body: AsyncIterator[Chunk],
    ) -> Response:
        """PUT ``length`` bytes that ``body`` yields; the request is complete only once
        ``body`` has ended (a failing ``body`` leaves the upstream request short)."""
        choice = await self.choose(target)
        form = stream_form(choice, headers, length)
        framing = form.framing

        async def framed() -> AsyncIterator[Chunk]:
            async for piece in body:
                out = framing.frame(piece)
                if out:
                    yield out
            yield framing.finish()

        # The pieces are bytes-like (aiohttp writes any); the client's signature says bytes.
        stream = cast(AsyncIterator[bytes], framed())
        return await self.upstream.send(
            "PUT", target, form.headers, stream, framing.length, form.payload, form.on_signed
        )

    async def put_whole(
        self, target: Target, headers: Iterable[tuple[str, str]], body: bytes
    ) -> Response:
        """PUT a body sent in one piece, signed with its SHA-256, with its checksum."""
        choice = await self.choose(target)
        return await self.upstream.send("PUT", target, whole_headers(choice, headers, body), body)
