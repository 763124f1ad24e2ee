"""The admin listener, on a port of its own (``S3PROXY_ADMIN_LISTEN``) so the kubelet can reach
it while the S3 port stays on loopback (docs/operations.md):

- ``GET /startup``: 200 once the process has started (see :mod:`s3proxy.server.lifecycle`).
- ``GET /liveness``: 200 while the process and its event loop answer.
- ``GET /readiness``: 200 when started and not draining (and, with
  ``S3PROXY_READINESS_REQUIRES_VAULT``, while Vault answers).
- ``GET /metrics``: Prometheus text.
- ``POST /quitquitquit``: a graceful stop, accepted from loopback peers only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from aiohttp import web

from s3proxy.ops import metrics
from s3proxy.server.lifecycle import Lifecycle


class Admin:
    def __init__(
        self,
        lifecycle: Lifecycle,
        vault_available: Callable[[], bool],
        readiness_requires_vault: bool,
    ) -> None:
        self._lifecycle = lifecycle
        self._vault_available = vault_available
        self._requires_vault = readiness_requires_vault

    async def startup(self, request: web.Request) -> web.Response:
        if self._lifecycle.started:
            return _text(200, "started")
        return _text(503, f"starting: {self._lifecycle.waiting_for}")

    async def liveness(self, request: web.Request) -> web.Response:
        return _text(200, "alive")

    async def readiness(self, request: web.Request) -> web.Response:
        lifecycle = self._lifecycle
        if lifecycle.draining:
            return _text(503, "draining")
        if not lifecycle.started:
            return _text(503, f"starting: {lifecycle.waiting_for}")
        if self._requires_vault and not self._vault_available():
            return _text(503, "Vault is unreachable (S3PROXY_READINESS_REQUIRES_VAULT)")
        return _text(200, "ready")

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
