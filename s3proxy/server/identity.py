"""Which identity the proxy uses upstream: for the start-up log line and ``GET /_s3proxy/whoami``
(answered to loopback clients only). Never shows a secret key, session token or Vault token."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from s3proxy import __version__
from s3proxy.config import Config
from s3proxy.keys.vaultauth import VaultAuth
from s3proxy.upstream.credentials import CredentialSource, caller_identity

log = logging.getLogger("s3proxy")

WHOAMI_PATH = "/_s3proxy/whoami"
IDENTITY_TTL = 60.0


class Identity:
    def __init__(
        self, config: Config, credentials: CredentialSource, vault_auth: VaultAuth | None = None
    ) -> None:
        self._config = config
        self._credentials = credentials
        self._vault_auth = vault_auth
        self._cached: tuple[float, str, dict[str, str] | None] | None = None

    @property
    def _asks_sts(self) -> bool:
        host = urlsplit(self._config.upstream.endpoint).hostname or ""
        return (
            host.endswith(".amazonaws.com")
            or self._config.upstream.credentials.sts_endpoint is not None
        )

    async def _caller(self) -> dict[str, str] | str | None:
        """GetCallerIdentity where the upstream is AWS (or an STS endpoint is configured)."""
        if not self._asks_sts:
            return None
        try:
            creds = await self._credentials.current()
        except Exception as exc:
            return f"unavailable: {exc}"
        cached = self._cached
        if cached and cached[1] == creds.access_key and time.monotonic() - cached[0] < IDENTITY_TTL:
            return cached[2]
        loop = asyncio.get_running_loop()
        try:
            found = await asyncio.wait_for(
                loop.run_in_executor(
                    None, caller_identity, self._config.upstream.credentials, creds
                ),
                20,
            )
        except Exception as exc:
            return f"unavailable: {type(exc).__name__}"
        self._cached = (time.monotonic(), creds.access_key, found)
        return found

    async def describe(self) -> dict[str, Any]:
        config = self._config
        try:
            access_key: str | None = (await self._credentials.current()).access_key
        except Exception:
            access_key = None
        expiry = self._credentials.expiry
        return {
            "version": __version__,
            "upstream": {"endpoint": config.upstream.endpoint, "region": config.upstream.region},
            "credentials": {
                "source": self._credentials.description,
                "access_key_id": access_key,
                "expires": expiry.isoformat() if expiry else None,
                "refreshes": self._credentials.refreshes,
            },
            "caller_identity": await self._caller(),
            "vault": {
                "address": config.vault.addr,
                "mount": config.vault.transit_mount,
                "key": config.vault.transit_key,
                "namespace": config.vault.namespace,
                "auth": config.vault.auth.method,
                "available": self._vault_auth.available if self._vault_auth else None,
                "logins": self._vault_auth.logins if self._vault_auth else None,
                "renewals": self._vault_auth.renewals if self._vault_auth else None,
            },
        }

    async def whoami(self, request: web.Request) -> web.Response:
        remote = request.remote or ""
        try:
            loopback = ipaddress.ip_address(remote.split("%")[0]).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise web.HTTPForbidden(text="whoami answers loopback clients only\n")
        return web.json_response(await self.describe())
