"""How the proxy authenticates to Vault, and keeps its token alive (docs/keys.md).

Methods (``S3PROXY_VAULT_AUTH``): ``token`` (``VAULT_TOKEN`` or a token file), ``kubernetes``
(the service account JWT against the Kubernetes auth method), ``jwt`` (the same JWT against a
JWT/OIDC auth method, for a Vault outside the cluster) and ``approle``.

A background task renews the token at about two thirds of its TTL, logs in again when it can no
longer be renewed, and checks Vault's reachability; requests never wait for any of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import requests

from s3proxy.config import VaultAuthSettings
from s3proxy.telemetry import metrics

log = logging.getLogger("s3proxy.vault")


class VaultLoginError(Exception):
    """Logging in to Vault failed (the message names no secret)."""


def _read(path: str) -> str:
    return Path(path).read_text().strip()


class VaultAuth:
    """The current token, shared by every worker thread; renewed and replaced in place."""

    def __init__(self, settings: VaultAuthSettings, make_client: Callable[[str | None], Any]):
        self._settings = settings
        self._make_client = make_client
        self._lock = threading.Lock()
        self.token: str | None = settings.token
        self.ttl: float = 0.0  # seconds the token had when obtained (0: does not expire)
        self.renewable = False
        self.obtained = time.monotonic()
        self.logins = 0
        self.renewals = 0
        self.available = True  # Vault answered the last check (also sets s3proxy_vault_up)
        self._task: asyncio.Task[None] | None = None

    @property
    def available(self) -> bool:
        """Vault answered the last check."""
        return self._available

    @available.setter
    def available(self, value: bool) -> None:
        self._available = value
        metrics.VAULT_UP.set(1 if value else 0)

    # ---- blocking operations (worker threads) ----------------------------------------------

    def login(self) -> None:
        """Obtain a fresh token with the configured method (blocking)."""
        with metrics.vault_call("login", vault_outcome):
            self._login()

    def _login(self) -> None:
        s = self._settings
        client = self._make_client(None)
        try:
            if s.method == "token":
                if s.token_file:
                    token = _read(s.token_file)
                elif s.token:
                    token = s.token
                else:
                    raise VaultLoginError("no Vault token configured")
                client.token = token
                info = client.auth.token.lookup_self()["data"]
                self._set(token, float(info.get("ttl") or 0), bool(info.get("renewable")))
                return
            if s.method in ("kubernetes", "jwt"):
                jwt = _read(s.jwt_file)
                if s.method == "kubernetes":
                    resp = client.auth.kubernetes.login(
                        role=s.role, jwt=jwt, mount_point=s.mount or "kubernetes"
                    )
                else:
                    resp = client.auth.jwt.jwt_login(role=s.role, jwt=jwt, path=s.mount or "jwt")
            elif s.method == "approle":
                secret_id = _read(s.secret_id_file) if s.secret_id_file else s.secret_id
                resp = client.auth.approle.login(
                    role_id=s.role_id, secret_id=secret_id, mount_point=s.mount or "approle"
                )
            else:
                raise VaultLoginError(f"unknown Vault auth method {s.method!r}")
        except (hvac.exceptions.VaultError, OSError, requests.RequestException) as exc:
            raise VaultLoginError(f"Vault {s.method} login failed: {type(exc).__name__}") from exc
        auth = resp["auth"]
        self._set(
            auth["client_token"],
            float(auth.get("lease_duration") or 0),
            bool(auth.get("renewable")),
        )
        self.logins += 1

    def _set(self, token: str, ttl: float, renewable: bool) -> None:
        with self._lock:
            self.token, self.ttl, self.renewable = token, ttl, renewable
            self.obtained = time.monotonic()

    def renew(self) -> None:
        client = self._make_client(self.token)
        auth = client.auth.token.renew_self()["auth"]
        self._set(
            auth["client_token"],
            float(auth.get("lease_duration") or 0),
            bool(auth.get("renewable")),
        )
        self.renewals += 1

    def check(self) -> None:
        with metrics.vault_call("check", vault_outcome):
            self._make_client(self.token).auth.token.lookup_self()

    def relogin_after_denial(self, failed_token: str | None) -> bool:
        """After Vault refused ``failed_token``: log in again (once per failed token). True if a
        new token is in place."""
        if not self._settings.can_login:
            return False
        with self._lock:
            if self.token != failed_token:
                return True  # another thread already replaced it
        try:
            self.login()
        except VaultLoginError as exc:
            log.error("%s", exc)
            return False
        log.warning("Vault refused the proxy's token; logged in again")
        return True

    # ---- background upkeep ------------------------------------------------------------------

    def _next_renewal(self) -> float:
        if not self.ttl:
            return float("inf")
        return max(0.5, self.obtained + self.ttl * 2 / 3 - time.monotonic())

    async def start(self, check_interval: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.login)
        except Exception as exc:
            self.available = False
            log.error("Vault login at start failed: %s", exc)
        self._task = asyncio.create_task(self._upkeep(check_interval))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _upkeep(self, check_interval: float) -> None:
        loop = asyncio.get_running_loop()
        backoff = 1.0
        next_check = time.monotonic() + check_interval
        while True:
            wait = min(self._next_renewal(), max(0.0, next_check - time.monotonic()))
            if self.token is None:
                wait = min(wait, backoff)
            await asyncio.sleep(wait)
            try:
                if self.token is None:
                    await loop.run_in_executor(None, self.login)
                elif self._next_renewal() <= 0.5:
                    await loop.run_in_executor(None, self._renew_or_login)
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + check_interval
                    await loop.run_in_executor(None, self._check_or_login)
                if not self.available:
                    log.info("Vault is reachable again")
                self.available = True
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.available:
                    log.error("Vault unavailable: %s", _describe(exc))
                self.available = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    def _renew_or_login(self) -> None:
        if self.renewable:
            try:
                self.renew()
                return
            except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest) as exc:
                log.warning(
                    "renewing the Vault token failed (%s); logging in again", type(exc).__name__
                )
        if self._settings.can_login:
            self.login()
        else:
            log.warning("the Vault token cannot be renewed and there is no way to log in again")
            self.ttl = 0.0

    def _check_or_login(self) -> None:
        try:
            self.check()
        except hvac.exceptions.Forbidden:
            if not self._settings.can_login:
                raise
            self.login()


def vault_outcome(exc: BaseException) -> str:
    """The outcome label of a failed Vault call (s3proxy_vault_request_duration_seconds)."""
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    cause = exc.__cause__ if isinstance(exc, VaultLoginError) else exc
    if isinstance(cause, TimeoutError | requests.exceptions.Timeout):
        return "timeout"
    if isinstance(cause, requests.exceptions.ConnectionError | hvac.exceptions.VaultDown):
        return "unreachable"
    if isinstance(cause, hvac.exceptions.Forbidden | hvac.exceptions.Unauthorized):
        return "denied"
    if isinstance(cause, hvac.exceptions.InvalidPath):
        return "not_found"
    if isinstance(cause, hvac.exceptions.InvalidRequest):
        return "rejected"
    return "error"


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, VaultLoginError) else type(exc).__name__
