"""The upstream side: the proxy's own credentials, SigV4 signing with botocore, and sending.

Requests always go to the configured endpoint, path-style; the caller hands over a
:class:`~s3proxy.request.Target`, never a URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import botocore.session
from botocore.auth import UNSIGNED_PAYLOAD, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from yarl import URL

from s3proxy.errors import CredentialsUnavailable, UpstreamUnavailable
from s3proxy.headers import Headers
from s3proxy.request import Target

log = logging.getLogger(__name__)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class _Signer(S3SigV4Auth):  # type: ignore[misc]
    """botocore's S3 SigV4 signer, told the payload hash instead of reading a body."""

    def payload(self, request: AWSRequest) -> str:
        return str(request.context.get("payload_hash", UNSIGNED_PAYLOAD))


class CredentialSource:
    """The proxy's credentials from botocore's default chain.

    Reading refreshable credentials can block on STS or a credentials endpoint; that happens in
    a worker thread, never on the event loop.
    """

    def __init__(self, credentials: Credentials | None, description: str) -> None:
        self._credentials = credentials
        self.description = description

    @classmethod
    def from_default_chain(cls) -> CredentialSource:
        session = botocore.session.get_session()
        # The workload's AWS_ENDPOINT_URL* point at this proxy; the proxy's own STS and
        # credential calls must not follow them.
        session.set_config_variable("ignore_configured_endpoint_urls", True)
        credentials = session.get_credentials()
        method = getattr(credentials, "method", "none") if credentials else "none"
        return cls(credentials, method)

    async def current(self) -> ReadOnlyCredentials:
        creds = self._credentials
        if creds is None:
            raise CredentialsUnavailable("The proxy has no upstream credentials.")
        try:
            if isinstance(creds, RefreshableCredentials) and creds.refresh_needed():
                loop = asyncio.get_running_loop()
                frozen: ReadOnlyCredentials = await loop.run_in_executor(
                    None, creds.get_frozen_credentials
                )
                return frozen
            return creds.get_frozen_credentials()
        except Exception as exc:
            log.error("refreshing upstream credentials failed: %s", type(exc).__name__)
            raise CredentialsUnavailable(
                "The proxy could not refresh its upstream credentials."
            ) from exc


class Upstream:
    """Signs and sends requests to the one configured S3 endpoint."""

    def __init__(self, endpoint: str, region: str, credentials: CredentialSource) -> None:
        self.endpoint = endpoint.rstrip("/")
        parts = urlsplit(self.endpoint)
        default_port = 443 if parts.scheme == "https" else 80
        self._host = parts.hostname or ""
        if parts.port and parts.port != default_port:
            self._host = f"{self._host}:{parts.port}"
        if ":" in (parts.hostname or ""):  # IPv6 literal
            self._host = parts.netloc
        self.region = region
        self.credentials = credentials
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=256, limit_per_host=256, ttl_dns_cache=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def sign(
        self, method: str, target: Target, headers: Headers, payload_hash: str
    ) -> tuple[str, dict[str, str]]:
        """The URL and the complete signed headers for a request."""
        url = self.endpoint + target.upstream_path()
        merged: dict[str, str] = {}
        for name, value in headers:
            lname = name.lower()
            merged[lname] = f"{merged[lname]},{value}" if lname in merged else value
        merged["host"] = self._host
        aws_request = AWSRequest(method=method, url=url, headers=merged, data=b"")
        aws_request.context["payload_hash"] = payload_hash
        creds = await self.credentials.current()
        _Signer(creds, "s3", self.region).add_auth(aws_request)
        return url, dict(aws_request.headers.items())

    async def send(
        self,
        method: str,
        target: Target,
        headers: Headers,
        body: bytes | AsyncIterator[bytes] | None = None,
        content_length: int | None = None,
    ) -> aiohttp.ClientResponse:
        """Send a signed request; ``body`` is bytes (its hash is signed) or a stream of exactly
        ``content_length`` bytes (sent as UNSIGNED-PAYLOAD)."""
        if self._session is None:
            raise RuntimeError("Upstream.start() was not awaited")
        out = list(headers)
        if isinstance(body, bytes):
            payload_hash = hashlib.sha256(body).hexdigest()
            if body or method in ("PUT", "POST"):
                out.append(("Content-Length", str(len(body))))
        elif body is None:
            payload_hash = EMPTY_SHA256
        else:
            if content_length is None:
                raise ValueError("a streamed body needs its length")
            payload_hash = UNSIGNED_PAYLOAD
            out.append(("Content-Length", str(content_length)))
        url, signed = await self.sign(method, target, out, payload_hash)
        data: Any = body
        try:
            return await self._session.request(
                method,
                URL(url, encoded=True),
                headers=signed,
                data=data,
                allow_redirects=False,
                compress=None,
                chunked=None,
            )
        except aiohttp.ClientConnectionError as exc:
            raise UpstreamUnavailable(
                f"The upstream object store could not be reached ({type(exc).__name__})."
            ) from exc
        except TimeoutError as exc:
            raise UpstreamUnavailable("The upstream object store timed out.") from exc
