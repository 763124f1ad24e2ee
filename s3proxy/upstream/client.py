"""The upstream side: the proxy's own credentials, SigV4 signing with botocore, and sending.

Requests always go to the configured endpoint, path-style; the caller hands over a
:class:`~s3proxy.core.request.Target`, never a URL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from s3proxy.config import UpstreamSettings
from s3proxy.config.proxies import ProxyEnvironment
from s3proxy.core.headers import HeaderPairs
from s3proxy.core.request import Target
from s3proxy.core.sigv4 import UNSIGNED_PAYLOAD
from s3proxy.telemetry import accesslog
from s3proxy.upstream import errors as upstream_errors
from s3proxy.upstream.credentials import CredentialSource, Frozen
from s3proxy.upstream.http11 import HttpClient
from s3proxy.upstream.pool import PoolLimits
from s3proxy.upstream.response import Response
from s3proxy.upstream.signer import Signer, hex_signature, signing_key

log = logging.getLogger(__name__)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
CONNECT_TIMEOUT = 30.0  # seconds a request may wait for an upstream connection
DIAL_TIMEOUT = 10.0  # seconds for opening one (TCP, a proxy's tunnel, TLS)
READ_TIMEOUT = 300.0  # seconds the upstream may be silent while an answer is awaited
IDLE_TIMEOUT = 15.0  # seconds a kept-alive connection may stay unused
POOL_LIMIT = 256  # connections to the upstream at once (per process)


@dataclass(frozen=True)
class Signing:
    """What signed a request, for what is signed after it (aws-chunked chunk signatures): its
    signature, ``X-Amz-Date`` and credential scope, and the function that signs with its key
    (derived once a day, upstream/signer.py)."""

    signature: str
    timestamp: str
    scope: str
    sign: Callable[[str], str]

    @classmethod
    def of(cls, headers: dict[str, str], creds: Frozen, region: str) -> Signing:
        authorization = headers.get("Authorization") or headers.get("authorization") or ""
        signature = authorization.rpartition("Signature=")[2]
        timestamp = headers.get("X-Amz-Date") or headers.get("x-amz-date") or ""
        key = signing_key(creds.secret_key, timestamp[:8], region, "s3")
        return cls(
            signature,
            timestamp,
            f"{timestamp[:8]}/{region}/s3/aws4_request",
            lambda text: hex_signature(key, text),
        )


class Upstream:
    """Signs and sends requests to the one configured S3 endpoint (through the forward proxy
    ``proxies`` names for it, if any: the settings' ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``
    as read at start)."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        credentials: CredentialSource,
        ca_bundle: str | None = None,
        now: Callable[[], dt.datetime] | None = None,  # the signing clock (tests fix it)
        proxies: ProxyEnvironment | None = None,
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
        self._signer = Signer(region, now or (lambda: dt.datetime.now(dt.UTC)))
        # The system's CAs (OpenSSL honours SSL_CERT_FILE and SSL_CERT_DIR), or the bundle; only
        # for an https endpoint (loading a CA bundle takes 25 to 40 ms of the start).
        self._ssl = None
        if parts.scheme == "https":
            self._ssl = (
                ssl.create_default_context(cafile=ca_bundle)
                if ca_bundle
                else ssl.create_default_context()
            )
        self._proxies = proxies or ProxyEnvironment()
        self._client: HttpClient | None = None

    async def start(self) -> None:
        self._client = HttpClient(
            self.endpoint,
            self._ssl,
            self._proxies,
            # (past the connect timeout, the wait for a pooled connection and connecting: 503)
            PoolLimits(POOL_LIMIT, IDLE_TIMEOUT, CONNECT_TIMEOUT, DIAL_TIMEOUT, READ_TIMEOUT),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def sign(
        self,
        method: str,
        target: Target,
        headers: HeaderPairs,
        payload_hash: str,
        on_signed: Callable[[Signing], None] | None = None,
    ) -> tuple[str, dict[str, str]]:
        """The URL and the complete signed headers for a request; ``on_signed`` is told what
        signed it."""
        url = self.endpoint + target.upstream_path()
        merged: dict[str, str] = {}
        for name, value in headers:
            lname = name.lower()
            merged[lname] = f"{merged[lname]},{value}" if lname in merged else value
        merged["host"] = self._host
        for name in ("authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"):
            merged.pop(name, None)  # the signer's own
        creds = await self.credentials.current()
        signed = self._signer.sign(method, target.upstream_path(), merged, payload_hash, creds)
        if on_signed is not None:
            on_signed(Signing.of(signed, creds, self.region))
        return url, signed

    async def send(
        self,
        method: str,
        target: Target,
        headers: Iterable[tuple[str, str]],
        body: bytes | AsyncIterator[bytes] | None = None,
        content_length: int | None = None,
        payload_hash: str | None = None,
        on_signed: Callable[[Signing], None] | None = None,
    ) -> Response:
        """Send a signed request; ``body`` is bytes (its hash is signed) or a stream of exactly
        ``content_length`` bytes (sent as UNSIGNED-PAYLOAD, or as the given ``payload_hash``,
        such as an aws-chunked framing with a trailing checksum, or signed chunks: their
        framer learns the request's signature from ``on_signed`` before the body is read)."""
        client = self._client
        if client is None:
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
        url, signed = await self.sign(method, target, out, payload_hash, on_signed)
        started, answer = time.monotonic(), None
        try:
            with upstream_errors.sending():
                path = url[len(self.endpoint) :]
                answer = await client.request(method, path, signed.items(), body)
            return answer
        finally:
            accesslog.note_upstream(
                method,
                answer.status if answer else 0,
                time.monotonic() - started,
                answer.headers.get("x-amz-request-id") if answer else None,
            )


def upstream_from(settings: UpstreamSettings, credentials: CredentialSource) -> Upstream:
    """The upstream client the settings describe, signing with ``credentials``."""
    return Upstream(
        settings.endpoint,
        settings.region,
        credentials,
        ca_bundle=settings.ca_bundle,
        proxies=settings.proxies,
    )
