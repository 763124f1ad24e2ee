"""The admin listener, on a port of its own (``S3PROXY_ADMIN_LISTEN``) so the kubelet can reach
it while the S3 port stays on loopback (docs/operations.md):

- ``GET /startup``: 200 once the process has started (see :mod:`s3proxy.server.lifecycle`).
  With several workers, ``/startup`` and ``/readiness`` answer for all of them
  (:mod:`s3proxy.server.peers`).
- ``GET /liveness``: 200 while the process and its event loop answer.
- ``GET /readiness``: 200 when started and not draining (and, with
  ``S3PROXY_READINESS_REQUIRES_VAULT``, while Vault answers).
- ``GET /metrics``: Prometheus text.
- ``POST /quitquitquit``: a graceful stop, accepted from loopback peers only.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable

from aiohttp import web

from s3proxy.server.lifecycle import Lifecycle
from s3proxy.server.peers import PUBLISH_INTERVAL, Peers
from s3proxy.telemetry import metrics


class Admin:
    def __init__(
        self,
        lifecycle: Lifecycle,
        vault_available: Callable[[], bool],
        readiness_requires_vault: bool,
        peers: Peers | None = None,
    ) -> None:
        self._lifecycle = lifecycle
        self._vault_available = vault_available
        self._requires_vault = readiness_requires_vault
        self._peers = peers  # the other workers' verdicts, with S3PROXY_WORKERS > 1

    async def startup(self, request: web.Request) -> web.Response:
        if not self._lifecycle.started:
            return _text(503, f"starting: {self._lifecycle.waiting_for}")
        if self._peers is not None and not self._peers.others_started():
            return _text(503, "starting: another worker has not started yet")
        return _text(200, "started")

    async def liveness(self, request: web.Request) -> web.Response:
        return _text(200, "alive")

    def own_readiness(self) -> tuple[int, str]:
        """This process's own verdict (status and text), whatever other workers say."""
        lifecycle = self._lifecycle
        if lifecycle.draining:
            return 503, "draining"
        if not lifecycle.started:
            return 503, f"starting: {lifecycle.waiting_for}"
        if self._requires_vault and not self._vault_available():
            return 503, "Vault is unreachable (S3PROXY_READINESS_REQUIRES_VAULT)"
        return 200, "ready"

    def publish(self) -> None:
        """Tell the other workers this one's verdicts."""
        if self._peers is not None:
            ready = self.own_readiness()[0] == 200
            self._peers.publish(self._lifecycle.started, ready)

    async def keep_publishing(self) -> None:
        while True:
            self.publish()
            await asyncio.sleep(PUBLISH_INTERVAL)

    async def readiness(self, request: web.Request) -> web.Response:
        status, text = self.own_readiness()
        self.publish()
        if status == 200 and self._peers is not None and not self._peers.others_ready():
            return _text(503, "another worker is not ready")
        return _text(status, text)

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def quit(self, request: web.Request) -> web.Response:
        if not _loopback_peer(request.remote or ""):
            return _text(403, "/quitquitquit is accepted from loopback only")
        self._lifecycle.request_stop("quitquitquit")
        return _text(200, "stopping")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/startup", self.startup)
        app.router.add_get("/liveness", self.liveness)
        app.router.add_get("/readiness", self.readiness)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/quitquitquit", self.quit)
        return app


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n")


def _loopback_peer(remote: str) -> bool:
    try:
        address = ipaddress.ip_address(remote.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback  # a dual-stack socket's IPv4 peer
    return address.is_loopback
