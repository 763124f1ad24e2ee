"""SigV4 in Python over the standard library's C HMAC and SHA-256, the signing key cached.

:class:`Signer` signs S3 requests as botocore's ``S3SigV4Auth`` does: the path and query are
signed as given (already encoded, never normalized or encoded again), header values trimmed
with inner runs of whitespace collapsed, and the payload hash sent as ``x-amz-content-sha256``.
tests/test_signer.py checks it byte for byte against botocore on generated requests. The
functions it is made of also sign for other services (with :func:`normalized_path` and
:func:`encoded_query`), which is how AWS's published SigV4 test suite checks them
(tests/vectors/sigv4/).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from urllib.parse import quote, unquote

from s3proxy.upstream.credentials import Frozen

ALGORITHM = "AWS4-HMAC-SHA256"
# Headers botocore never signs either (they may change in transit).
UNSIGNED_HEADERS = frozenset({"expect", "transfer-encoding", "user-agent", "x-amzn-trace-id"})
_TIMESTAMP = "%Y%m%dT%H%M%SZ"
_sha256 = hashlib.sha256
_hmac = hmac.digest


@lru_cache(maxsize=8)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """``AWS4``+secret, then the date (YYYYMMDD), region, service and ``aws4_request``."""
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = _hmac(key, part.encode(), "sha256")
    return key


def hex_signature(key: bytes, text: str) -> str:
    """The hex HMAC-SHA256 of ``text`` with a signing key."""
    return _hmac(key, text.encode(), "sha256").hex()


def canonical_query(query: str) -> str:
    """The already-encoded ``a=1&b`` query as signed: pairs sorted by key, then value."""
    if "&" not in query:
        return query if not query or "=" in query else query + "="
    pairs = sorted(pair.partition("=") for pair in query.split("&"))
    return "&".join([f"{key}={value}" for key, _, value in pairs])


def canonical_headers(
    headers: Iterable[tuple[str, str]], unsigned: frozenset[str] = UNSIGNED_HEADERS
) -> dict[str, str]:
    """Lowercase name -> value as signed (trimmed, inner whitespace collapsed, repeated names'
    values joined by commas in order), for every header that is signed."""
    canon: dict[str, str] = {}
    for name, value in headers:
        lname = name.lower()
        if lname in unsigned:
            continue
        value = " ".join(value.split())
        canon[lname] = f"{canon[lname]},{value}" if lname in canon else value
    return canon


def canonical_request(
    method: str, path: str, query: str, canon: Mapping[str, str], payload_hash: str
) -> tuple[str, str]:
    """The canonical request and its signed-headers list; ``path`` and ``query`` as signed."""
    names = sorted(canon)
    signed = ";".join(names)
    lines = "".join([f"{name}:{canon[name]}\n" for name in names])
    return (
        f"{method}\n{path}\n{canonical_query(query)}\n{lines}\n{signed}\n{payload_hash}",
        signed,
    )


def string_to_sign(timestamp: str, scope: str, canonical: str) -> str:
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{_sha256(canonical.encode()).hexdigest()}"


def normalized_path(path: str) -> str:
    """A path as services other than S3 sign it: dot segments and repeated slashes removed
    (a trailing slash kept), then percent-encoded once more."""
    if not path:
        return "/"
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and segments else ""
    return quote(first + "/".join(segments) + last, safe="/~")


def encoded_query(query: str) -> str:
    """A raw query with each key and value percent-encoded as SigV4 requires (all but
    ``A-Za-z0-9-._~``), for services whose callers do not encode it themselves."""
    if not query:
        return ""
    pairs = (pair.partition("=") for pair in query.split("&"))
    return "&".join(
        f"{quote(unquote(key), safe='-_.~')}={quote(unquote(value), safe='-_.~')}"
        for key, _, value in pairs
    )


class Signer:
    """SigV4 for S3, with the signing key and credential scope kept while the credentials, the
    day and the region stay the same."""

    def __init__(
        self,
        region: str,
        now: Callable[[], dt.datetime],
        service: str = "s3",
        unsigned: frozenset[str] = UNSIGNED_HEADERS,
    ) -> None:
        self._region = region
        self._service = service
        self._now = now
        self._unsigned = unsigned
        self._second = (float("-inf"), "")
        self._scope: tuple[tuple[str, str, str], hmac.HMAC, str, str] | None = None

    def _timestamp(self) -> str:
        """``X-Amz-Date`` now, from the UTC clock (formatted once a second)."""
        moment = self._now()
        second = moment.timestamp() // 1
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, moment.strftime(_TIMESTAMP))
        return cached[1]

    def _scoped(self, creds: Frozen, date: str) -> tuple[hmac.HMAC, str, str]:
        """The keyed HMAC, the credential scope and the Authorization up to the headers."""
        ident = (creds.access_key, creds.secret_key, date)
        cached = self._scope
        if cached is None or cached[0] != ident:
            key = signing_key(creds.secret_key, date, self._region, self._service)
            scope = f"{date}/{self._region}/{self._service}/aws4_request"
            prefix = f"{ALGORITHM} Credential={creds.access_key}/{scope}, SignedHeaders="
            cached = self._scope = (ident, hmac.new(key, digestmod=_sha256), scope, prefix)
        return cached[1:]

    def sign(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        payload_hash: str,
        creds: Frozen,
    ) -> dict[str, str]:
        """All of ``headers`` (the signed ones' values trimmed) with the request's
        ``X-Amz-Date``, ``x-amz-content-sha256``, ``X-Amz-Security-Token`` (with a session
        token) and ``Authorization``. ``path`` is the encoded path with its ``?query``."""
        timestamp = self._timestamp()
        keyed, scope, prefix = self._scoped(creds, timestamp[:8])
        unsigned = self._unsigned
        out: dict[str, str] = {}
        canon: dict[str, str] = {}
        rest: list[tuple[str, str]] = []
        for name, value in headers.items():
            lname = name.lower()
            if lname in unsigned:
                rest.append((name, value))
                continue
            out[name] = value.strip(" \t")
            trimmed = " ".join(value.split())
            canon[lname] = f"{canon[lname]},{trimmed}" if lname in canon else trimmed
        if creds.token:
            canon["x-amz-security-token"] = out["X-Amz-Security-Token"] = creds.token
        canon["x-amz-date"] = out["X-Amz-Date"] = timestamp
        canon["x-amz-content-sha256"] = out["x-amz-content-sha256"] = payload_hash
        uri, _, query = path.partition("?")
        canonical, signed = canonical_request(method, uri, query, canon, payload_hash)
        mac = keyed.copy()
        mac.update(string_to_sign(timestamp, scope, canonical).encode())
        out["Authorization"] = f"{prefix}{signed}, Signature={mac.hexdigest()}"
        if rest:
            out.update(rest)
        return out
