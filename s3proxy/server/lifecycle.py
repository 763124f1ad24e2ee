"""The process's state as its probes report it, and its graceful stop (docs/operations.md).

- *started*: Vault login, the first upstream credentials and a first check of the transit key
  (a data key made and unwrapped again) have all succeeded; set once, never cleared.
- *draining*: a stop was asked for (SIGTERM, SIGINT or ``POST /quitquitquit``); readiness fails
  from that moment, responses carry ``Connection: close``, and the S3 listener closes after the
  shutdown delay; requests in flight then have the grace period to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from s3proxy.core.errors import S3ProxyError
from s3proxy.keys.transit import VaultTransit
from s3proxy.upstream.credentials import CredentialSource

log = logging.getLogger("s3proxy.lifecycle")

MAX_RETRY = 30.0  # seconds between startup checks at the most


class Lifecycle:
    def __init__(self) -> None:
        self.started = False
        self.waiting_for = "the first checks"  # what startup waits for, for /startup
        self.draining = False
        self.stop_reason: str | None = None
        self._stop = asyncio.Event()
        self._urgent = asyncio.Event()  # a second stop request: wait no longer
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # ---- stopping --------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Start draining (readiness fails now) and wake :meth:`wait_for_stop`; a second
        request ends the waiting for the delay and the grace period."""
        if self.draining:
            if not self._urgent.is_set():
                log.warning("stop requested again (%s): cutting requests in flight now", reason)
            self._urgent.set()
            return
        self.draining = True
        self.stop_reason = reason
        log.info("stop requested (%s): draining", reason)
        self._stop.set()

    async def wait_for_stop(self) -> str:
        await self._stop.wait()
        return self.stop_reason or "stop"

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or until a second stop request."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._urgent.wait(), seconds)

    async def wait_idle(self, timeout: float) -> bool:
        """Whether every request in flight finished within ``timeout`` seconds (waiting ends
        early at a second stop request)."""
        waiters = {
            asyncio.ensure_future(self._idle.wait()),
            asyncio.ensure_future(self._urgent.wait()),
        }
        _, pending = await asyncio.wait(
            waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in pending:
            waiter.cancel()
        return self._in_flight == 0

    # ---- counting requests (s3proxy.server.shell) ------------------------------------------

    def entered(self) -> None:
        """A request of the S3 listener started."""
        self._in_flight += 1
        self._idle.clear()

    def left(self) -> None:
        """A request of the S3 listener ended."""
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    # ---- startup -----------------------------------------------------------------------------

    async def run_startup_checks(
        self, credentials: CredentialSource, vault: VaultTransit, retry: float = 1.0
    ) -> None:
        """Repeat the first checks until they pass, then mark the process started."""
        last: str | None = None
        while True:
            failing = await first_failing_check(credentials, vault)
            if failing is None:
                self.started = True
                self.waiting_for = ""
                log.info("startup checks passed: Vault, upstream credentials, transit key")
                return
            self.waiting_for = failing
            if failing != last:
                log.warning("not started yet: %s", failing)
                last = failing
            await asyncio.sleep(retry)
            retry = min(retry * 2, MAX_RETRY)


async def first_failing_check(credentials: CredentialSource, vault: VaultTransit) -> str | None:
    """What keeps the proxy from being started (None: nothing). Never names a secret."""
    if not vault.auth.available or vault.auth.token is None:
        return "Vault login has not succeeded"
    try:
        await credentials.current()
    except S3ProxyError as exc:
        return f"upstream credentials: {exc.message}"
    started = time.monotonic()
    try:
        key = await vault.new_data_key()
        unwrapped = await vault.unwrap(key.wrapped)
        await vault.metadata_key()  # (the HMAC that new objects' footers are sealed with)
    except S3ProxyError as exc:
        return f"transit key check: {exc.message}"
    if unwrapped != key.plaintext:
        return "transit key check: the unwrapped data key differs from the one made"
    log.debug("transit key check took %.1f ms", (time.monotonic() - started) * 1000)
    return None
