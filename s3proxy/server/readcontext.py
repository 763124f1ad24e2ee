"""What the readers of GetObject and HeadObject share (server/reads.py, server/heads.py,
server/partreads.py): built once per proxy by server/app.py."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from s3proxy.config import Config
from s3proxy.core.headers import HeaderPairs
from s3proxy.core.request import Target
from s3proxy.server.readrules import unencrypted_allowed
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
