"""The proxy's own upstream credentials: where they come from and how they stay fresh.

Order (docs/credentials.md): ``S3PROXY_S3_ACCESS_KEY_ID``/``S3PROXY_S3_SECRET_ACCESS_KEY``, else
botocore's default chain (environment, web identity/IRSA, container credentials/EKS Pod Identity,
shared files, IMDS). Then, with ``S3PROXY_S3_ROLE_ARN``, AssumeRole into that role (with
``S3PROXY_S3_EXTERNAL_ID``) using whatever came before.

Temporary credentials are refreshed by a background task ahead of expiry; requests only read the
current snapshot and never wait on STS or a credentials endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from s3proxy.config import CredentialSettings
from s3proxy.core.errors import CredentialsUnavailable
from s3proxy.telemetry import metrics

log = logging.getLogger("s3proxy.upstream.credentials")

# Refresh this long before expiry at the most (botocore refreshes within 15 minutes of expiry),
# and at half the remaining lifetime for short-lived credentials, leaving room for retries.
REFRESH_MARGIN = dt.timedelta(minutes=12)
MAX_BACKOFF = 60.0


class Frozen(NamedTuple):
    """The credentials requests are signed with, as they are now (the fields of botocore's
    ``ReadOnlyCredentials``)."""

    access_key: str
    secret_key: str
    token: str | None


class Refreshing(Protocol):
    """What a source of credentials is: botocore's credentials, or :class:`StaticKeys`."""

    method: str

    def get_frozen_credentials(self) -> Any: ...  # access_key, secret_key, token (and more)


class StaticKeys:
    """Keys that never change: no botocore (nor its import, which costs the start) needed."""

    def __init__(self, access_key: str, secret_key: str, token: str | None, method: str) -> None:
        self._frozen = Frozen(access_key, secret_key, token)
        self.method = method

    def get_frozen_credentials(self) -> Frozen:
        return self._frozen


def _session(settings: CredentialSettings) -> Any:
    import botocore.session  # (its import costs the start: only for credentials that need it)

    session = botocore.session.get_session()
    # The workload's AWS_ENDPOINT_URL* point at this proxy; the proxy's own calls must not.
    session.set_config_variable("ignore_configured_endpoint_urls", True)
    if settings.region and settings.region != "auto":
        session.set_config_variable("region", settings.region)
    if settings.sts_endpoint:
        create_client = session.create_client

        def with_sts_endpoint(service_name: str, *args: Any, **kwargs: Any) -> Any:
            if service_name == "sts":
                kwargs["endpoint_url"] = settings.sts_endpoint
            return create_client(service_name, *args, **kwargs)

        session.create_client = with_sts_endpoint
    return session


def resolve(settings: CredentialSettings) -> tuple[Refreshing | None, str]:
    """The credentials object and a description of where it came from. Blocking (it may read
    files); call it off the event loop. Static keys need no botocore session (nor its import)."""
    session = None if settings.access_key_id and not settings.role_arn else _session(settings)
    credentials: Refreshing | None
    if settings.access_key_id:
        credentials = StaticKeys(
            settings.access_key_id,
            settings.secret_access_key or "",
            settings.session_token,
            method="s3proxy-static",
        )
        source = "S3PROXY_S3_ACCESS_KEY_ID"
    else:
        assert session is not None
        credentials = session.get_credentials()
        source = getattr(credentials, "method", None) or "none"
    if settings.role_arn and credentials is not None:
        from botocore.credentials import (
            AssumeRoleCredentialFetcher,
            Credentials,
            DeferredRefreshableCredentials,
        )

        assert session is not None
        if isinstance(credentials, StaticKeys):  # (botocore's fetcher takes its own kind)
            access_key, secret_key, token = credentials.get_frozen_credentials()
            credentials = Credentials(access_key, secret_key, token, method=credentials.method)
        extra: dict[str, Any] = {"RoleSessionName": settings.role_session_name}
        if settings.external_id:
            extra["ExternalId"] = settings.external_id
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=session.create_client,
            source_credentials=credentials,
            role_arn=settings.role_arn,
            extra_args=extra,
        )
        credentials = DeferredRefreshableCredentials(
            method="assume-role", refresh_using=fetcher.fetch_credentials
        )
        source = f"{source} then AssumeRole {settings.role_arn}"
    return credentials, source


def _frozen(found: Any) -> Frozen:
    """botocore's ``ReadOnlyCredentials`` (or :class:`Frozen`) as :class:`Frozen`."""
    return Frozen(found.access_key, found.secret_key, found.token)


def _expiry(credentials: Refreshing) -> dt.datetime | None:
    """When botocore's refreshable credentials expire (None: static ones)."""
    expiry: dt.datetime | None = getattr(credentials, "_expiry_time", None)
    return expiry


class CredentialSource:
    """The current credentials snapshot, kept fresh in the background."""

    def __init__(self, resolver: Callable[[], tuple[Refreshing | None, str]]) -> None:
        self._resolver = resolver
        self._credentials: Refreshing | None = None
        self._snapshot: Frozen | None = None
        self.expiry: dt.datetime | None = None
        self.description = "unresolved"
        self.refreshes = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def static(cls, access_key: str, secret_key: str, token: str | None = None) -> CredentialSource:
        return cls(lambda: (StaticKeys(access_key, secret_key, token, method="static"), "static"))

    def _load(self) -> tuple[Frozen, dt.datetime | None]:
        if self._credentials is None:
            self._credentials, self.description = self._resolver()
            if self._credentials is None:
                raise CredentialsUnavailable("The proxy found no upstream credentials.")
        frozen = _frozen(self._credentials.get_frozen_credentials())
        return frozen, _expiry(self._credentials)

    async def _fetch(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            snapshot, expiry = await loop.run_in_executor(None, self._load)
        except Exception:
            metrics.CREDENTIAL_FAILURES.inc()
            raise
        self._snapshot, self.expiry = snapshot, expiry
        self.refreshes += 1
        metrics.CREDENTIAL_REFRESHES.inc()

    async def start(self) -> None:
        """Resolve the credentials once; then refresh them in the background. A failure here is
        logged and retried: requests get 503 until credentials arrive."""
        try:
            await self._fetch()
        except Exception as exc:
            log.error("getting upstream credentials failed: %s", _describe(exc))
        self._task = asyncio.create_task(self._refresh_loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _seconds_until_refresh(self) -> float | None:
        if self._snapshot is None:
            return 0.0
        if self.expiry is None:
            return None  # static credentials never need refreshing
        now = dt.datetime.now(dt.UTC)
        remaining = self.expiry - now
        margin = min(REFRESH_MARGIN, remaining / 2)
        return max(0.2, (remaining - margin).total_seconds())

    async def _refresh_loop(self) -> None:
        backoff = 1.0
        while True:
            delay = self._seconds_until_refresh()
            if delay is None:
                return
            await asyncio.sleep(delay)
            previous = self.expiry
            try:
                await self._fetch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "refreshing upstream credentials failed (retry in %.0fs): %s",
                    backoff,
                    _describe(exc),
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 1.0
            if previous is not None and self.expiry is not None and self.expiry <= previous:
                await asyncio.sleep(1.0)  # the source handed back the same credentials
            else:
                log.info("upstream credentials refreshed; valid until %s", self.expiry)

    async def current(self) -> Frozen:
        snapshot = self._snapshot
        if snapshot is None:
            raise CredentialsUnavailable("The proxy has no upstream credentials yet.")
        if self.expiry is not None and self.expiry <= dt.datetime.now(dt.UTC):
            raise CredentialsUnavailable("The proxy's upstream credentials expired.")
        return snapshot


def caller_identity(settings: CredentialSettings, credentials: Frozen) -> dict[str, str]:
    """STS GetCallerIdentity for these credentials (blocking)."""
    from botocore.config import Config as BotoConfig

    session = _session(settings)
    client = session.create_client(
        "sts",
        region_name=settings.region if settings.region != "auto" else "us-east-1",
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
        config=BotoConfig(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=10),
    )
    found = client.get_caller_identity()
    return {"arn": found["Arn"], "account": found["Account"], "user_id": found["UserId"]}


def _describe(exc: Exception) -> str:
    """An error without secrets: its type and botocore's error code, if any."""
    code = (
        getattr(exc, "response", {}).get("Error", {}).get("Code")
        if hasattr(exc, "response")
        else None
    )
    return f"{type(exc).__name__}{f' ({code})' if code else ''}"
