"""The upstream side: the proxy's own credentials, SigV4 signing with botocore, and sending.

Requests always go to the configured endpoint, path-style; the caller hands over a
:class:`~s3proxy.core.request.Target`, never a URL.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from botocore.auth import UNSIGNED_PAYLOAD, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from yarl import URL

from s3proxy.core.errors import UpstreamUnavailable
from s3proxy.core.headers import Headers
from s3proxy.core.request import Target
from s3proxy.ops import accesslog
from s3proxy.upstream.credentials import CredentialSource

log = logging.getLogger(__name__)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
CONNECT_TIMEOUT = 30.0  # seconds a request may wait for an upstream connection


class _Signer(S3SigV4Auth):  # type: ignore[misc]
    """botocore's S3 SigV4 signer, told the payload hash instead of reading a body."""

    def payload(self, request: AWSRequest) -> str:
        return str(request.context.get("payload_hash", UNSIGNED_PAYLOAD))


class Upstream:
    """Signs and sends requests to the one configured S3 endpoint."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        credentials: CredentialSource,
        ca_bundle: str | None = None,
    ) -> None:
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
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        )
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=256, limit_per_host=256, ttl_dns_cache=60, ssl=self._ssl
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            # connect: the wait for a pooled connection plus connecting; past it, 503.
            timeout=aiohttp.ClientTimeout(
                total=None, connect=CONNECT_TIMEOUT, sock_connect=10, sock_read=300
            ),
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
        payload_hash: str | None = None,
    ) -> aiohttp.ClientResponse:
        """Send a signed request; ``body`` is bytes (its hash is signed) or a stream of exactly
        ``content_length`` bytes (sent as UNSIGNED-PAYLOAD, or as the given ``payload_hash``,
        such as an aws-chunked framing with a trailing checksum)."""
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
            payload_hash = payload_hash or UNSIGNED_PAYLOAD
            out.append(("Content-Length", str(content_length)))
        url, signed = await self.sign(method, target, out, payload_hash)
        data: Any = body
        started, answer = time.monotonic(), None
        try:
            answer = await self._session.request(
                method,
                URL(url, encoded=True),
                headers=signed,
                data=data,
                allow_redirects=False,
                compress=None,
                chunked=None,
            )
            return answer
        except aiohttp.ClientConnectionError as exc:
            raise UpstreamUnavailable(
                f"The upstream object store could not be reached ({type(exc).__name__})."
            ) from exc
        except TimeoutError as exc:
            raise UpstreamUnavailable("The upstream object store timed out.") from exc
        finally:
            accesslog.note_upstream(
                method,
                answer.status if answer else 0,
                time.monotonic() - started,
                answer.headers.get("x-amz-request-id") if answer else None,
            )
