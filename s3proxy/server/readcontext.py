"""What the readers of GetObject and HeadObject share (server/reads.py, server/heads.py,
server/partreads.py): built once per proxy by server/app.py."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from s3proxy.config import Config
from s3proxy.core.headers import HeaderPairs
from s3proxy.core.marker import Marker
from s3proxy.core.request import Target
from s3proxy.server.readrules import ReadHeaders, read_answer, unencrypted_allowed
from s3proxy.server.relay import relay
from s3proxy.server.sending import PlaintextSender
from s3proxy.store.objects import ObjectInspector
from s3proxy.upstream.client import Upstream


@dataclass(frozen=True)
class ReadContext:
    config: Config
    upstream: Upstream
    objects: ObjectInspector
    sender: PlaintextSender

    async def relay_unencrypted(
        self, request: web.Request, method: str, target: Target, headers: HeaderPairs
    ) -> web.StreamResponse:
        """A read of an object the proxy did not write, sent again as the client made it and
        relayed as the upstream answers, where the policy allows unencrypted objects."""
        plain = await self.upstream.send(method, target, headers)
        async with plain:
            if plain.status in (200, 206):
                unencrypted_allowed(self.config, target, plain)
            return await relay(request, plain)

    async def read_probed(
        self,
        request: web.Request,
        target: Target,
        read_headers: ReadHeaders,
        keys: dict[str, bytes],
        asked: Target,
    ) -> web.StreamResponse:
        """A read answered from a probe of ``target``: the plaintext the client's query plans
        (core/readplan.py) if the proxy wrote the object; else the store's answer relayed, or
        the client's request (``asked``) sent again as it was made, where the policy allows
        unencrypted objects."""
        headers = read_headers.forwarded
        async with self.objects.probing(target, headers, keys) as probe:
            if probe.info is not None:
                marker = Marker.of(probe.resp.headers)
                answer = read_answer(read_headers.query, probe.info, marker, probe.resp)
                return await self.sender.send_span(
                    request, target, headers, probe.resp, answer, keys
                )
            if probe.resp.status not in (200, 206, 416):
                return await relay(request, probe.resp)
        # Not ours (or empty): the upstream answers the client's own range and conditions.
        return await self.relay_unencrypted(request, request.method, asked, read_headers.as_sent())
