"""Inbound request parsing and classification. Pure: strings in, decisions out.

The proxy derives the bucket and key from the request path (path-style) or from a Host of the
form ``bucket.<virtual-host suffix>``; neither the Host nor an absolute request URI can choose
where the request goes, only which bucket it names. The upstream URL is always built from the
configured endpoint plus a canonically encoded path-style path.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from s3proxy.core.errors import InvalidRequest, InvalidURI, NotImplementedByProxy

# The workload's own signing travels in these query parameters (SigV4 and SigV2 presigning).
PRESIGN_PARAMS = frozenset(
    p.lower()
    for p in (
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
        "AWSAccessKeyId",
        "Signature",
        "Expires",
    )
)

_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_SURROGATE = re.compile("[\ud800-\udfff]")

Query = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class Target:
    """What a request addresses: bucket and key decoded, query without presign parameters."""

    bucket: str | None
    key: str | None
    query: Query

    def param(self, name: str) -> str | None:
        for k, v in self.query:
            if k == name:
                return "" if v is None else v
        return None

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.query)

    def without(self, name: str) -> Target:
        return Target(self.bucket, self.key, tuple((k, v) for k, v in self.query if k != name))

    @property
    def resource(self) -> str:
        """The resource as S3 names it in error documents."""
        if self.bucket is None:
            return "/"
        return f"/{self.bucket}" + ("" if self.key is None else f"/{self.key}")

    def upstream_path(self) -> str:
        """Path-style path and query, percent-encoded as SigV4 canonicalises them."""
        return self._upstream_path

    @functools.cached_property
    def _upstream_path(self) -> str:  # (a request signs and sends it: worked out once)
        path = "/"
        if self.bucket is not None:
            path += _quote(self.bucket, "")
            if self.key is not None:
                path += "/" + _quote(self.key, "/~")
        if not self.query:
            return path
        parts = []
        for k, v in self.query:
            parts.append(
                _quote(k, "-_.~") if v is None else f"{_quote(k, '-_.~')}={_quote(v, '-_.~')}"
            )
        return path + "?" + "&".join(parts)


def _quote(text: str, safe: str) -> str:
    return quote(text, safe=safe, encoding="utf-8", errors="surrogateescape")


def _unquote(text: str) -> str:
    return unquote(text, encoding="utf-8", errors="surrogateescape")


def _split_request_target(raw: str) -> tuple[str, str]:
    """Path and query of an origin-form or absolute-form request target; the authority of an
    absolute URI is dropped, never used."""
    lowered = raw[:8].lower()
    if lowered.startswith(("http://", "https://")):
        rest = raw.split("://", 1)[1]
        slash = rest.find("/")
        raw = "/" if slash < 0 else rest[slash:]
    if not raw.startswith("/"):
        raise InvalidRequest("request target must be a path")
    path, _, query = raw.partition("?")
    return path, query


def _parse_query(query: str) -> Query:
    out: list[tuple[str, str | None]] = []
    for pair in query.split("&"):
        if not pair:
            continue
        k, eq, v = pair.partition("=")
        name = _unquote(k)
        if name.lower() in PRESIGN_PARAMS:
            continue
        out.append((name, _unquote(v) if eq else None))
    return tuple(out)


def virtual_host_bucket(host: str | None, suffixes: Iterable[str]) -> str | None:
    """The bucket a virtual-hosted style Host names, if it is one."""
    if not host:
        return None
    name = host.strip().lower()
    if name.startswith("["):
        return None
    name = name.rsplit(":", 1)[0] if ":" in name else name
    for suffix in suffixes:
        tail = "." + suffix.lower().strip(".")
        if name.endswith(tail) and len(name) > len(tail):
            return name[: -len(tail)]
    return None


def parse_target(raw_target: str, host: str | None, virtual_host_suffixes: Iterable[str]) -> Target:
    """Bucket, key and query of a request, path-style or virtual-hosted style."""
    raw_path, raw_query = _split_request_target(raw_target)
    query = _parse_query(raw_query)
    bucket = virtual_host_bucket(host, virtual_host_suffixes)
    if bucket is not None:
        key: str | None = _unquote(raw_path[1:]) or None
    else:
        rest = raw_path[1:]
        if not rest:
            return Target(None, None, query)
        raw_bucket, slash, raw_key = rest.partition("/")
        bucket = _unquote(raw_bucket)
        key = _unquote(raw_key) if slash and raw_key else None
    if not _BUCKET_RE.match(bucket):
        raise InvalidRequest("The specified bucket is not valid.")
    if key is not None and not utf8_text(key):
        raise InvalidURI()
    return Target(bucket, key, query)


def utf8_text(text: str) -> bool:
    """Whether ``text`` came from valid UTF-8: S3 keys are UTF-8, and a key of other bytes
    (kept by surrogateescape, or an encoded surrogate) is refused before anything uses it."""
    return text.isascii() or not _SURROGATE.search(text)


class Action(enum.Enum):
    """How the proxy handles a request."""

    PASS_THROUGH = "pass-through"  # body and response unchanged apart from signing
    PUT_OBJECT = "put-object"  # encrypt the body
    UPLOAD_PART = "upload-part"  # encrypt the body as one stream of the object
    GET_OBJECT = "get-object"  # decrypt the body
    HEAD_OBJECT = "head-object"  # report plaintext sizes
    READ_PART = "read-part"  # GET or HEAD ?partNumber=N: the plaintext part
    CREATE_MULTIPART = "create-multipart"  # mark the object-to-be as encrypted
    COMPLETE_MULTIPART = "complete-multipart"  # map the parts' plaintext ETags to stored ones
    LIST_PARTS = "list-parts"  # report plaintext part sizes
    LIST_OBJECTS = "list-objects"  # report plaintext object sizes
    COPY_OBJECT = "copy-object"  # keep the source's encryption marker
    UPLOAD_PART_COPY = "upload-part-copy"  # copy whole streams, re-encrypt other ranges
    GET_ATTRIBUTES = "get-attributes"  # report plaintext size, ETag, checksum and parts
    OBJECT_TAGGING = "object-tagging"  # keep the proxy's manifest tag, hidden from clients


# ListObjects, ListObjectsV2 and ListObjectVersions parameters.
_LIST_PARAMS = frozenset(
    {
        "list-type",
        "prefix",
        "delimiter",
        "marker",
        "max-keys",
        "encoding-type",
        "continuation-token",
        "fetch-owner",
        "start-after",
        "key-marker",
        "version-id-marker",
        "versions",
        "allow-unordered",
        "x-id",
    }
)
# Object subresources whose requests and responses never carry object data.
_OBJECT_PASS_THROUGH = frozenset({"tagging", "acl", "retention", "legal-hold"})
# GetObject/HeadObject query parameters that select or shape the same object.
_GET_PARAMS = frozenset(
    {
        "versionId",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "x-id",
    }
)


@dataclass(frozen=True)
class Classification:
    action: Action
    operation: str  # the S3 operation's name, for logs


def _refuse(why: str) -> NotImplementedByProxy:
    return NotImplementedByProxy(f"s3proxy does not support this request: {why}")


def classify(method: str, target: Target, headers: Mapping[str, str]) -> Classification:
    """Decide how to handle a request. Raises :class:`NotImplementedByProxy` for any request
    that could carry object data the proxy does not know how to encrypt or decrypt.

    ``headers`` must be looked up case-insensitively (lower-case names are used here).
    """
    method = method.upper()
    names = {k for k, _ in target.query}
    if target.key is None:
        return _classify_bucket(method, target, names)
    subresources = names - {"versionId", "x-id"}
    if subresources == {"tagging"} and method in ("PUT", "GET", "DELETE"):
        return Classification(Action.OBJECT_TAGGING, f"{method.title()}ObjectTagging")
    if subresources and subresources <= _OBJECT_PASS_THROUGH and method in ("PUT", "GET"):
        return Classification(Action.PASS_THROUGH, f"{method.title()}ObjectSubresource")
    if method == "PUT":
        return _classify_put(names, headers)
    if method in ("GET", "HEAD"):
        return _classify_read(method, names)
    if method == "DELETE":
        if "uploadId" in names:
            return Classification(Action.PASS_THROUGH, "AbortMultipartUpload")
        return Classification(Action.PASS_THROUGH, "DeleteObject")
    if method == "POST":
        return _classify_post(names)
    if method == "OPTIONS":
        return Classification(Action.PASS_THROUGH, "OptionsObject")
    raise _refuse(f"method {method}")


def _classify_bucket(method: str, target: Target, names: set[str]) -> Classification:
    """A request naming no key: a bucket's or the service's."""
    if method == "POST" and "delete" not in names:
        raise _refuse("browser-form POST uploads would store plaintext")
    if method == "GET" and target.bucket is not None and names <= _LIST_PARAMS:
        name = "ListObjectVersions" if "versions" in names else "ListObjects"
        return Classification(Action.LIST_OBJECTS, name)
    return Classification(Action.PASS_THROUGH, "bucket-or-service")


def _classify_put(names: set[str], headers: Mapping[str, str]) -> Classification:
    """An object PUT: a part, a copy or a whole object."""
    copy_source = headers.get("x-amz-copy-source")
    if "partNumber" in names or "uploadId" in names:
        if not {"partNumber", "uploadId"} <= names or names - {"partNumber", "uploadId", "x-id"}:
            raise _refuse(f"unknown multipart request {sorted(names)!r}")
        if copy_source is not None:
            return Classification(Action.UPLOAD_PART_COPY, "UploadPartCopy")
        return Classification(Action.UPLOAD_PART, "UploadPart")
    if names - {"x-id"}:
        raise _refuse(f"unknown object subresource {sorted(names)!r}")
    if headers.get("x-amz-write-offset-bytes") is not None:
        raise _refuse("appending to an object would mix streams the proxy cannot mark")
    if copy_source is not None:
        return Classification(Action.COPY_OBJECT, "CopyObject")
    return Classification(Action.PUT_OBJECT, "PutObject")


def _classify_read(method: str, names: set[str]) -> Classification:
    """An object GET or HEAD."""
    if "uploadId" in names and method == "GET":
        return Classification(Action.LIST_PARTS, "ListParts")
    if "attributes" in names and method == "GET" and not names - _GET_PARAMS - {"attributes"}:
        return Classification(Action.GET_ATTRIBUTES, "GetObjectAttributes")
    if names - _GET_PARAMS - {"partNumber"}:
        raise _refuse(f"unknown object subresource {sorted(names)!r}")
    if "partNumber" in names:
        return Classification(Action.READ_PART, f"{method.title()}Object(partNumber)")
    if method == "GET":
        return Classification(Action.GET_OBJECT, "GetObject")
    return Classification(Action.HEAD_OBJECT, "HeadObject")


def _classify_post(names: set[str]) -> Classification:
    """An object POST: multipart uploads and restores; select is refused."""
    if "restore" in names:
        return Classification(Action.PASS_THROUGH, "RestoreObject")
    if "select" in names:
        raise _refuse("SelectObjectContent cannot query encrypted objects")
    if "uploads" in names:
        return Classification(Action.CREATE_MULTIPART, "CreateMultipartUpload")
    if "uploadId" in names:
        return Classification(Action.COMPLETE_MULTIPART, "CompleteMultipartUpload")
    raise _refuse(f"unknown object POST {sorted(names)!r}")
