"""The workload's own SigV4 signature, read and checked (client authentication, off by default).

Pure: this module parses what the client sent (``Authorization`` header or presigned query),
applies S3's rules on time, scope and unsigned headers, and checks aws-chunked chunk and trailer
signatures in order. The signature arithmetic itself (key derivation, HMAC) is handed in as a
``sign`` function by the shell, which takes it from botocore. docs/client-auth.md explains the
mode and its limits.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote_to_bytes

from s3proxy.core.errors import (
    AccessDeniedByProxy,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidRequest,
    InvalidURI,
    MalformedChunk,
    NotImplementedByProxy,
    RequestTimeTooSkewed,
    S3ProxyError,
    SignatureDoesNotMatch,
)
from s3proxy.core.numbers import parse_decimal

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=15)
MAX_EXPIRES = 7 * 24 * 3600
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
SIGNED_CHUNKS = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_CHUNKS_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SIGNED_HEADERS = 64

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP = "%Y%m%dT%H%M%SZ"

Sign = Callable[[str], str]  # string to sign -> hex signature, with the request's signing key


@dataclass(frozen=True)
class ClientSignature:
    """What a request claims: who signed it, for which scope and time, over which headers."""

    access_key: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: str  # X-Amz-Date, YYYYMMDDTHHMMSSZ
    presigned: bool
    expires: int | None
    payload_hash: str
    query: tuple[tuple[str, str], ...]  # decoded query parameters that are signed

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"

    @property
    def body_sha256(self) -> str | None:
        """The hex SHA-256 the body must have, when the client signed one."""
        return self.payload_hash if _HEX64.fullmatch(self.payload_hash) else None

    @property
    def signed_chunks(self) -> bool:
        return self.payload_hash in (SIGNED_CHUNKS, SIGNED_CHUNKS_TRAILER)


def _error(presigned: bool, message: str) -> S3ProxyError:
    if presigned:
        return AuthorizationQueryParametersError(message)
    return AuthorizationHeaderMalformed(message)


def _credential(text: str, presigned: bool) -> tuple[str, str, str, str]:
    parts = text.split("/")
    if len(parts) != 5 or not all(parts) or parts[4] != "aws4_request":
        raise _error(
            presigned,
            "The credential is malformed; expecting "
            '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".',
        )
    access_key, date, region, service, _ = parts
    if len(date) != 8 or parse_decimal(date) is None:
        raise _error(presigned, f"Invalid credential date {date!r}.")
    if service != "s3":
        raise _error(presigned, f"The credential names service {service!r}; expecting 's3'.")
    return access_key, date, region, service


def _signed_headers(text: str, presigned: bool) -> tuple[str, ...]:
    names = tuple(text.split(";"))
    if not text or len(names) > MAX_SIGNED_HEADERS or any(n != n.strip().lower() for n in names):
        raise _error(presigned, "SignedHeaders is malformed.")
    if "host" not in names:
        raise _error(presigned, "The host header must be signed.")
    return names


def _authorization_fields(value: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in value[len(ALGORITHM) :].split(","):
        name, eq, field_value = part.strip().partition("=")
        if not eq or name in fields:
            raise AuthorizationHeaderMalformed("The authorization header is malformed.")
        fields[name] = field_value.strip()
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        raise AuthorizationHeaderMalformed(
            "The authorization header needs Credential, SignedHeaders and Signature."
        )
    return fields


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """The query's parameters, percent-decoded, in the order sent (a missing '=' is an empty
    value, as SigV4 canonicalizes it). Bytes that are not UTF-8 are refused: decoded with
    replacement characters, two different queries would verify as one."""
    pairs = []
    for piece in raw_query.split("&") if raw_query else ():
        name, _, value = piece.partition("=")
        pairs.append((_strict_unquote(name), _strict_unquote(value)))
    return pairs


def _strict_unquote(text: str) -> str:
    try:
        return unquote_to_bytes(text.encode("utf-8", "surrogateescape")).decode("utf-8")
    except UnicodeError as exc:
        raise InvalidURI() from exc


def _payload_hash(value: str | None, presigned: bool) -> str:
    if value is None:
        if presigned:
            return UNSIGNED_PAYLOAD
        raise InvalidRequest("Missing required header for this request: x-amz-content-sha256.")
    if _HEX64.fullmatch(value) or value in (
        UNSIGNED_PAYLOAD,
        SIGNED_CHUNKS,
        SIGNED_CHUNKS_TRAILER,
        UNSIGNED_TRAILER,
    ):
        return value
    if value.startswith("STREAMING-AWS4-ECDSA"):
        raise NotImplementedByProxy("SigV4a is not supported with client authentication.")
    raise InvalidRequest(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a STREAMING- type or a hex SHA-256."
    )


def read_signature(raw_query: str, headers: Mapping[str, str]) -> ClientSignature:
    """The SigV4 signature a request carries. ``headers`` must look names up case-blind."""
    authorization = headers.get("Authorization")
    pairs = query_pairs(raw_query)
    params = dict(pairs)
    if authorization is not None and "X-Amz-Algorithm" in params:
        raise InvalidRequest(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query "
            "parameter or the Authorization header should be specified."
        )
    if authorization is not None:
        if not authorization.startswith(ALGORITHM + " "):
            raise InvalidRequest(
                "The authorization mechanism you have provided is not supported. "
                "Please use AWS4-HMAC-SHA256."
            )
        fields = _authorization_fields(authorization)
        access_key, date, region, service = _credential(fields["Credential"], False)
        timestamp = headers.get("x-amz-date")
        if timestamp is None:
            raise AccessDeniedByProxy("AWS authentication requires a valid x-amz-date header.")
        return ClientSignature(
            access_key=access_key,
            date=date,
            region=region,
            service=service,
            signed_headers=_signed_headers(fields["SignedHeaders"], False),
            signature=fields["Signature"],
            timestamp=timestamp,
            presigned=False,
            expires=None,
            payload_hash=_payload_hash(headers.get("x-amz-content-sha256"), False),
            query=tuple(pairs),
        )
    if "X-Amz-Algorithm" in params:
        return _presigned(pairs, params, headers)
    if "Signature" in params and "AWSAccessKeyId" in params:
        raise InvalidRequest(
            "The authorization mechanism you have provided is not supported. "
            "Please use AWS4-HMAC-SHA256."
        )
    raise AccessDeniedByProxy("Anonymous requests are not accepted: this proxy checks signatures.")


def _presigned(
    pairs: Sequence[tuple[str, str]], params: Mapping[str, str], headers: Mapping[str, str]
) -> ClientSignature:
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise AuthorizationQueryParametersError("X-Amz-Algorithm only supports AWS4-HMAC-SHA256.")
    needed = ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders")
    missing = [n for n in (*needed, "X-Amz-Signature") if n not in params]
    if missing:
        raise AuthorizationQueryParametersError(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
            "X-Amz-Expires parameters."
        )
    expires = presigned_expiry(params["X-Amz-Expires"])
    access_key, date, region, service = _credential(params["X-Amz-Credential"], True)
    return ClientSignature(
        access_key=access_key,
        date=date,
        region=region,
        service=service,
        signed_headers=_signed_headers(params["X-Amz-SignedHeaders"], True),
        signature=params["X-Amz-Signature"],
        timestamp=params["X-Amz-Date"],
        presigned=True,
        expires=expires,
        payload_hash=_payload_hash(headers.get("x-amz-content-sha256"), True),
        query=tuple(p for p in pairs if p[0] != "X-Amz-Signature"),
    )


def presigned_expiry(text: str) -> int:
    """A presigned URL's ``X-Amz-Expires``: whole seconds, 1 to 604800, as S3 takes it (checked
    whether or not the proxy checks signatures: S3 would refuse the URL either way)."""
    digits = text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        raise AuthorizationQueryParametersError("X-Amz-Expires should be a number")
    if text.startswith("-"):
        raise AuthorizationQueryParametersError("X-Amz-Expires must be non-negative")
    seconds = int(text)
    if seconds < 1:
        raise AuthorizationQueryParametersError("X-Amz-Expires must be at least one second")
    if seconds > MAX_EXPIRES:
        raise AuthorizationQueryParametersError(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given "
            "X-Amz-Expires must be less than 604800 seconds"
        )
    return seconds


def check_time(sig: ClientSignature, now: datetime) -> None:
    """S3's rules on when a signature is valid: 15 minutes of skew for signed requests, the
    validity window for presigned ones."""
    try:
        when = datetime.strptime(sig.timestamp, _TIMESTAMP).replace(tzinfo=UTC)
    except ValueError as exc:
        raise _error(
            sig.presigned, f"X-Amz-Date {sig.timestamp!r} is not YYYYMMDDTHHMMSSZ."
        ) from exc
    if sig.timestamp[:8] != sig.date:
        raise _error(sig.presigned, "The credential date does not match X-Amz-Date.")
    if not sig.presigned:
        if abs(now - when) > MAX_SKEW:
            raise RequestTimeTooSkewed()
        return
    if when - now > MAX_SKEW:
        raise AccessDeniedByProxy("Request is not valid yet.")
    if now > when + timedelta(seconds=sig.expires or 0):
        raise AccessDeniedByProxy("Request has expired.")


# Headers that must be signed: S3's own, and GCS's, which the proxy forwards and a GCS upstream
# acts on just the same (x-goog-metadata-directive, x-goog-copy-source, x-goog-meta-*).
MUST_SIGN_PREFIXES = ("x-amz-", "x-goog-")


def check_unsigned_headers(sig: ClientSignature, header_names: Sequence[str]) -> None:
    """Every ``x-amz-*`` (and ``x-goog-*``) header the request carries must be signed, as S3
    requires (so nothing such as a copy source or metadata can be added to a signed request)."""
    signed = set(sig.signed_headers)
    carried = {n.lower() for n in header_names}
    unsigned = sorted({n for n in carried if n.startswith(MUST_SIGN_PREFIXES)} - signed)
    if sig.presigned:
        unsigned = [n for n in unsigned if n != "x-amz-content-sha256"]
    if unsigned:
        raise AccessDeniedByProxy(
            "There were headers present in the request which were not signed: "
            + ", ".join(unsigned)
        )


def same_signature(expected: str, given: str) -> None:
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise SignatureDoesNotMatch(
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method."
        )


def chunk_string_to_sign(timestamp: str, scope: str, previous: str, chunk_sha256: str) -> str:
    """What an aws-chunked chunk's signature signs: the previous signature and its SHA-256."""
    return "\n".join(
        ("AWS4-HMAC-SHA256-PAYLOAD", timestamp, scope, previous, EMPTY_SHA256, chunk_sha256)
    )


class ChunkSignatures:
    """Checks the signature chain of a signed aws-chunked body: each chunk is signed over the
    previous signature (the request's own, first) and the chunk's SHA-256; the trailer, if the
    payload type has one, over the last chunk's signature and the trailing headers."""

    def __init__(self, sig: ClientSignature, sign: Sign) -> None:
        self._timestamp = sig.timestamp
        self._scope = sig.scope
        self._previous = sig.signature
        self._sign = sign
        self._trailer = sig.payload_hash == SIGNED_CHUNKS_TRAILER
        self._claimed: str | None = None
        self._hash = hashlib.sha256()

    def begin(self, signature: str | None) -> None:
        if signature is None:
            raise MalformedChunk("a chunk has no chunk-signature")
        self._claimed = signature
        self._hash = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def end(self) -> None:
        string_to_sign = chunk_string_to_sign(
            self._timestamp, self._scope, self._previous, self._hash.hexdigest()
        )
        same_signature(self._sign(string_to_sign), self._claimed or "")
        self._previous = self._claimed or ""
        self._claimed = None

    def trailers(self, trailers: Mapping[str, str]) -> None:
        """Called once the body ended, with its trailing headers (lower-case names)."""
        if not self._trailer:
            return
        claimed = trailers.get("x-amz-trailer-signature")
        if claimed is None:
            raise MalformedChunk("the trailer has no x-amz-trailer-signature")
        canonical = "".join(
            f"{name}:{value}\n"
            for name, value in sorted(trailers.items())
            if name != "x-amz-trailer-signature"
        )
        string_to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-TRAILER",
                self._timestamp,
                self._scope,
                self._previous,
                hashlib.sha256(canonical.encode()).hexdigest(),
            )
        )
        same_signature(self._sign(string_to_sign), claimed)


def parse_credentials_file(text: str) -> dict[str, str]:
    """``access-key-id secret-access-key`` per line; blank lines and ``#`` comments ignored."""
    keys: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"line {number}: expected 'ACCESS_KEY_ID SECRET_ACCESS_KEY'")
        keys[fields[0]] = fields[1]
    return keys
