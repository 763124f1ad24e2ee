"""Client authentication: the workload's SigV4 signature checked against keys the proxy was given
(``S3PROXY_CLIENT_AUTH=sigv4``), before the proxy strips it and signs with its own.

The rules (scope, time, unsigned headers, chunk chains) live in :mod:`s3proxy.core.sigv4`; this
shell recomputes signatures with botocore's S3 SigV4 signer, told exactly which headers the
client signed, and remembers per request what the body must hash to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote, unquote_to_bytes, urlsplit

from aiohttp import web

from s3proxy.core.errors import (
    ContentSha256Mismatch,
    InvalidAccessKeyId,
    InvalidRequest,
    S3ProxyError,
)
from s3proxy.core.sigv4 import (
    ChunkSignatures,
    ClientSignature,
    check_time,
    check_unsigned_headers,
    read_signature,
    same_signature,
)
from s3proxy.server.bodies import body_chunks, reserve

SIGNATURE = web.RequestKey("s3proxy.client_signature", ClientSignature)  # once verified
CHUNKS = web.RequestKey("s3proxy.chunk_signatures", ChunkSignatures)  # signed aws-chunked body
IGNORED_BODY_LIMIT = 64 * 1024  # bodies of requests that take none (S3 ignores them)


def _canonical_path(raw_target: str) -> str:
    """The path as SigV4 canonicalizes it, from the very bytes the router decodes: a signature
    for one key never covers another (``%FF`` and ``%EF%BF%BD`` stay two paths)."""
    path = raw_target.partition("?")[0]
    if not path.startswith("/"):  # an absolute URI as request target
        path = urlsplit(path).path or "/"
    raw = unquote_to_bytes(path.encode("utf-8", "surrogateescape"))
    return quote(raw, safe="/~")


class ClientAuthenticator:
    """Checks requests against the workload keys (access key ID -> secret)."""

    def __init__(
        self,
        keys: Mapping[str, str],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._keys = dict(keys)
        self._now = now
        # botocore's signer, imported only where clients are authenticated (it costs the start)
        from s3proxy.server import clientsignatures

        self._botocore = clientsignatures

    def verify(self, request: web.Request) -> ClientSignature:
        """Raises the S3 error S3 would give, or records the signature on the request."""
        raw_target = request.raw_path
        sig = read_signature(raw_target.partition("?")[2], request.headers)
        secret = self._keys.get(sig.access_key)
        if secret is None:
            raise InvalidAccessKeyId()
        check_time(sig, self._now())
        check_unsigned_headers(sig, list(request.headers.keys()))
        url = "http://proxy" + _canonical_path(raw_target)
        expected, sign_chunk = self._botocore.expected(secret, sig, request, url)
        same_signature(expected, sig.signature)
        request[SIGNATURE] = sig
        if sig.signed_chunks:
            request[CHUNKS] = ChunkSignatures(sig, sign_chunk)
        return sig


def chunk_signatures(request: web.Request) -> ChunkSignatures | None:
    """The chunk-signature checker of a verified signed aws-chunked upload, if any."""
    return request.get(CHUNKS)


def body_sha256(request: web.Request) -> str | None:
    """The hex SHA-256 a verified request's body must have (its signed payload hash)."""
    sig = request.get(SIGNATURE)
    return sig.body_sha256 if sig is not None else None


class BodyHash:
    """Feeds a request body to SHA-256 and compares it with the signed payload hash."""

    def __init__(self, expected: str | None) -> None:
        self.expected = expected
        self._hash = hashlib.sha256() if expected is not None else None

    @classmethod
    def of(cls, request: web.Request) -> BodyHash:
        return cls(body_sha256(request))

    def update(self, data: bytes) -> None:
        if self._hash is not None:
            self._hash.update(data)

    def verify(self) -> None:
        if self._hash is not None and self._hash.hexdigest() != self.expected:
            raise ContentSha256Mismatch()


async def read_checked(request: web.Request, limit: int, too_large: S3ProxyError) -> bytes:
    """The whole (small) request body, at most ``limit`` bytes (else ``too_large`` is raised),
    checked against the signed payload hash when the client signed one. Its bytes are taken
    from the process's budget for held bodies until the request ends."""
    check = BodyHash.of(request)
    length = request.content_length
    if length is not None and length > limit:
        raise too_large
    reserve(request, limit if length is None else length)
    body = bytearray()
    async for piece in body_chunks(request, 64 * 1024, held=True):
        body += piece
        if len(body) > limit:
            raise too_large
        check.update(piece)
    check.verify()
    return bytes(body)


async def discard_body(request: web.Request) -> None:
    """Reads the body of a request that carries no data the proxy uses (copies, multipart
    creation): bounded, and checked against a signed payload hash."""
    await read_checked(request, IGNORED_BODY_LIMIT, InvalidRequest("This request takes no body."))
