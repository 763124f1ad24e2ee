"""Header rules: what the proxy forwards upstream and back. Pure: header lists in and out.

Headers are ``(name, value)`` pairs; names are matched case-insensitively.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from s3proxy.core.numbers import parse_decimal

HeaderPairs = list[tuple[str, str]]


class Headers:
    """An ordered list of header fields, names matched case-insensitively, that is never
    changed in place: :meth:`without`, :meth:`replace` and :meth:`plus` return new lists. It
    iterates as ``(name, value)`` pairs, so it goes wherever :data:`HeaderPairs` go."""

    __slots__ = ("_pairs",)

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs: tuple[tuple[str, str], ...] = tuple(pairs)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._pairs == other._pairs

    def __hash__(self) -> int:
        return hash(self._pairs)

    def __repr__(self) -> str:
        return f"Headers({list(self._pairs)!r})"

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        wanted = name.lower()
        return any(k.lower() == wanted for k, _ in self._pairs)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``."""
        wanted = name.lower()
        for k, v in self._pairs:
            if k.lower() == wanted:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        wanted = name.lower()
        return [v for k, v in self._pairs if k.lower() == wanted]

    def without(self, *names: str) -> Headers:
        """These headers less every field of ``names``."""
        dropped = {n.lower() for n in names}
        return Headers((k, v) for k, v in self._pairs if k.lower() not in dropped)

    def replace(self, name: str, value: str) -> Headers:
        """Every field of ``name`` dropped and one ``name: value`` added at the end."""
        return Headers((*self.without(name), (name, value)))

    def plus(self, pairs: Iterable[tuple[str, str]]) -> Headers:
        """These headers followed by ``pairs`` (names already present stay)."""
        return Headers((*self._pairs, *pairs))

    def pairs(self) -> HeaderPairs:
        """A list of the fields, for an API that takes a list."""
        return list(self._pairs)


# The metadata key that marks an object as written by s3proxy (see docs/format.md).
MARKER_HEADER = "x-amz-meta-s3proxy-encryption"
OWN_METADATA_PREFIX = "x-amz-meta-s3proxy-"
# GCS's XML API shows user metadata as x-goog-meta-* too: the same keys, another prefix.
OWN_METADATA_PREFIXES = (OWN_METADATA_PREFIX, "x-goog-meta-s3proxy-")
# The plaintext's full-object checksum, as "<algorithm>:<base64>", when the client sent one.
CHECKSUM_METADATA = "x-amz-meta-s3proxy-checksum"

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

# The workload's signing, and what only the proxy may set for the upstream.
_CLIENT_SIGNING = frozenset(
    {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"}
)
_SET_BY_PROXY = frozenset({"host", "content-length", "expect", "accept-encoding"})
# CORS is the proxy's own (core/access.py): a browser's origin never reaches the bucket's rules,
# and the bucket's CORS answers never reach the browser.
_CORS_REQUEST = frozenset(
    {"origin", "access-control-request-method", "access-control-request-headers"}
)
# SDK bookkeeping about the client's own attempts against the proxy (SDKs add these after
# signing); the proxy's request upstream is another attempt of its own.
_CLIENT_HOP = frozenset({"amz-sdk-invocation-id", "amz-sdk-request"})

# Headers that describe or check the body as the client sent it: they would be wrong for the
# ciphertext the proxy sends instead.
_PLAINTEXT_BODY_HEADERS = frozenset(
    {
        "content-md5",
        "x-amz-sdk-checksum-algorithm",
        "x-amz-trailer",
        "x-amz-decoded-content-length",
    }
)

# Response headers that describe the stored (ciphertext) body (GCS's too: its hashes and the
# stored length).
_CIPHERTEXT_RESPONSE_HEADERS = frozenset(
    {"content-range", "x-amz-checksum-type", "x-goog-hash", "x-goog-stored-content-length"}
)


# What every request or response loses (the Connection header's tokens besides).
_REQUEST_DROP = HOP_BY_HOP | _CLIENT_SIGNING | _SET_BY_PROXY | _CLIENT_HOP | _CORS_REQUEST
_RESPONSE_DROP = HOP_BY_HOP | {"content-length"}
_NOT_TO_CLIENTS = (*OWN_METADATA_PREFIXES, "access-control-")  # (name prefixes)
_CHECKSUM_PREFIX = "x-amz-checksum-"


def _lowered(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(lower-case name, name, value) of each field."""
    return [(name.lower(), name, value) for name, value in headers]


def _dropped(always: frozenset[str], fields: list[tuple[str, str, str]]) -> frozenset[str]:
    """``always`` and the header names the ``Connection`` fields list."""
    tokens = {
        token.strip().lower()
        for lname, _, value in fields
        if lname == "connection"
        for token in value.split(",")
        if token.strip()
    }
    return always | tokens if tokens else always


def is_checksum_header(name: str) -> bool:
    return name.lower().startswith(_CHECKSUM_PREFIX)


def upstream_request_headers(
    headers: Iterable[tuple[str, str]], *, encrypting: bool
) -> HeaderPairs:
    """The client's headers as the proxy forwards them, before it adds its own and signs.

    Always dropped: the client's signing, hop-by-hop headers (and those named by
    ``Connection``), ``Host``, ``Content-Length``, ``Expect``, ``Accept-Encoding``, and any
    ``x-amz-meta-s3proxy-*`` the client tried to set. When the body is encrypted, also everything
    that describes the plaintext body (digests, checksums, aws-chunked declarations).
    """
    fields = _lowered(headers)
    drop = _dropped(_REQUEST_DROP, fields)
    out: HeaderPairs = []
    for lname, name, value in fields:
        if lname in drop or lname.startswith(OWN_METADATA_PREFIXES):
            continue
        if encrypting and (lname in _PLAINTEXT_BODY_HEADERS or lname.startswith(_CHECKSUM_PREFIX)):
            continue
        if lname == "content-encoding":
            # aws-chunked is the framing of this request, not how the object is stored.
            codings = [c.strip() for c in value.split(",") if c.strip().lower() != "aws-chunked"]
            if not codings:
                continue
            value = ",".join(codings)
        out.append((name, value))
    return out


def client_response_headers(headers: Iterable[tuple[str, str]], *, decrypted: bool) -> HeaderPairs:
    """The upstream's response headers as the client gets them.

    Hop-by-hop headers never pass, nor ``Content-Length`` (the caller sets the length of the
    body it actually sends), nor the proxy's own metadata. For a decrypted object, headers that
    describe the ciphertext (range, checksums) are removed for the caller to set for the
    plaintext.
    """
    fields = _lowered(headers)
    drop = _dropped(_RESPONSE_DROP, fields)
    out: HeaderPairs = []
    for lname, name, value in fields:
        if lname in drop or lname.startswith(_NOT_TO_CLIENTS):
            continue
        if decrypted and (
            lname in _CIPHERTEXT_RESPONSE_HEADERS or lname.startswith(_CHECKSUM_PREFIX)
        ):
            continue
        out.append((name, value))
    return out


def marker_value(
    segment_size: int,
    *,
    version: int,
    multipart: bool = False,
    checksum: tuple[str, str] | None = None,
) -> str:
    """The marker's fields; ``checksum`` is a multipart upload's (algorithm, type)."""
    value = f"v={version};seg={segment_size}" + (";mp=1" if multipart else "")
    if checksum is not None:
        value += f";ck={checksum[0]};ct={checksum[1]}"
    return value


def parse_marker(value: str) -> dict[str, str]:
    """The fields of an ``x-amz-meta-s3proxy-encryption`` value."""
    fields: dict[str, str] = {}
    for part in value.split(";"):
        k, _, v = part.strip().partition("=")
        if k:
            fields[k] = v
    return fields


def own_metadata(headers: Mapping[str, str], name: str) -> str | None:
    """The proxy's metadata ``name`` (``encryption``, ``checksum``) from a response, under
    S3's prefix or GCS's."""
    for prefix in OWN_METADATA_PREFIXES:
        value = headers.get(prefix + name)
        if value is not None:
            return value
    return None


def metadata_directive(headers: Mapping[str, str]) -> str:
    """A copy's metadata directive (``COPY`` unless ``REPLACE``), S3's header or GCS's."""
    value = headers.get("x-amz-metadata-directive") or headers.get("x-goog-metadata-directive")
    return (value or "COPY").strip().upper()


def get_header(headers: Mapping[str, str] | Iterable[tuple[str, str]], name: str) -> str | None:
    items = headers.items() if isinstance(headers, Mapping) else headers
    lname = name.lower()
    for k, v in items:
        if k.lower() == lname:
            return v
    return None


def content_length(headers: Mapping[str, str]) -> int | None:
    """A response's ``Content-Length`` (None if absent or not a decimal)."""
    return parse_decimal(headers.get("Content-Length"))


def content_range_total(headers: Mapping[str, str]) -> int | None:
    """The object's whole size from a response's ``Content-Range`` (``bytes a-b/total``)."""
    return parse_decimal(headers.get("Content-Range", "").rpartition("/")[2])
