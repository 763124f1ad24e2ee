"""A scripted fake S3 upstream in the test process (the "playbook" of mitmproxy's tests): an
aiohttp low-level server on 127.0.0.1 that speaks real HTTP/1.1 to the proxy's upstream client.

A test states the upstream requests it expects, in order (:class:`Req`), or as an unordered group
where the proxy sends them concurrently (:class:`Unordered`), each with its method, path-style
path, query and the headers that matter, and the answer to give. By default the answer comes from
a small in-memory object store (:class:`Store`) that answers as S3 does, so a test says "expect
``GET /b/k`` with ``Range: bytes=0-255``, answered from the store" instead of crafting bytes.

Every request is recorded. A request that is not the next one expected fails the test (it is
answered ``500 UnexpectedRequest``), and so does an expected request that never came.

Matching is exact where it matters: the query must be exactly the one stated, the headers a step
names must have the stated values (``None``: absent), and a request carrying one of the
:data:`SIGNIFICANT` headers that its step does not name does not match. Signing is not checked
beyond an ``Authorization`` header being present (SigV4 is checked by the end-to-end tests
against moto and Ceph RGW).

The store is bounded to what the proxy sends: no versioning, no minimum part size, ListObjectsV2
without pagination; payload checksums (``Content-MD5``, ``x-amz-checksum-crc32`` as a header or
an aws-chunked trailer) are verified as S3 verifies them.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import threading
import time
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from email.utils import formatdate, parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"

# Headers whose presence changes what a request means: a request carrying one its step does not
# name is not the request expected.
SIGNIFICANT = frozenset(
    {
        "range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
        "x-amz-copy-source",
        "x-amz-copy-source-range",
        "x-amz-copy-source-if-match",
        "x-amz-copy-source-if-none-match",
        "x-amz-copy-source-if-modified-since",
        "x-amz-copy-source-if-unmodified-since",
        "x-amz-metadata-directive",
        "x-amz-tagging-directive",
        "x-amz-tagging",
    }
)


class _Anything:
    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Anything()  # a header that must be present, with any value


@dataclass(frozen=True)
class Received:
    """One request as the fake upstream received it."""

    method: str
    path: str  # percent-decoded, path-style: /bucket/key
    query: dict[str, str]  # a parameter without a value has ""
    headers: CIMultiDictProxy[str]
    body: bytes
    complete: bool = True  # False: the body ended short of its length (the sender cut it)

    @property
    def bucket(self) -> str:
        return self.path.lstrip("/").partition("/")[0]

    @property
    def key(self) -> str | None:
        _, slash, key = self.path.lstrip("/").partition("/")
        return key if slash and key else None

    def describe(self) -> str:
        query = "&".join(f"{k}={v}" if v else k for k, v in sorted(self.query.items()))
        shown = [f"{k}: {v}" for k, v in self.headers.items() if k.lower() in SIGNIFICANT]
        cut = "" if self.complete else " (cut short)"
        return f"{self.method} {self.path}{'?' + query if query else ''} {shown}{cut}"


@dataclass(frozen=True)
class Reply:
    """An answer of the fake upstream."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def with_headers(self, **changed: str) -> Reply:
        """The reply with these headers replaced (``x_amz_meta_a`` names ``x-amz-meta-a``)."""
        names = {k.replace("_", "-").lower(): v for k, v in changed.items()}
        kept = tuple((k, v) for k, v in self.headers if k.lower() not in names)
        return replace(self, headers=(*kept, *names.items()))

    def response(self) -> web.Response:
        headers = CIMultiDict(self.headers)
        if "Content-Length" not in headers:
            headers["Content-Length"] = str(len(self.body))
        return web.Response(status=self.status, headers=headers, body=self.body or None)


Answer = Reply | Callable[[Received], Reply]


@dataclass(frozen=True)
class Req:
    """An expected request: method, path (``/bucket/key``), exactly this query, these headers
    (a value, ``None`` for absent, :data:`ANY`); answered by ``answer``, else by the store.
    ``complete=False``: a request whose body the sender cut short (nothing is answered)."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, Any] = field(default_factory=dict)
    answer: Answer | None = None
    complete: bool = True

    def mismatch(self, got: Received) -> str | None:
        """Why ``got`` is not this request (``None``: it is)."""
        if (got.method, got.path) != (self.method, self.path):
            return f"{got.method} {got.path}"
        if got.complete != self.complete:
            return "a body cut short" if self.complete else "a complete body"
        if dict(got.query) != dict(self.query):
            return f"query {got.query}"
        named = {k.lower() for k in self.headers}
        for name, want in self.headers.items():
            value = got.headers.get(name)
            if want is None and value is not None:
                return f"{name}: {value} (expected none)"
            if want is ANY and value is None:
                return f"no {name}"
            if want is not None and want is not ANY and value != want:
                return f"{name}: {value} (expected {want})"
        extra = [k for k in got.headers if k.lower() in SIGNIFICANT and k.lower() not in named]
        if extra:
            return f"unexpected {extra[0]}: {got.headers[extra[0]]}"
        return None

    def describe(self) -> str:
        query = "&".join(f"{k}={v}" if v else k for k, v in sorted(self.query.items()))
        shown = [f"{k}: {v}" for k, v in self.headers.items()]
        cut = "" if self.complete else " (cut short)"
        return f"{self.method} {self.path}{'?' + query if query else ''} {shown}{cut}"


class Unordered:
    """Requests expected in any order (the proxy sends them concurrently)."""

    def __init__(self, *steps: Req) -> None:
        self.steps = steps


def GET(path: str, *, answer: Answer | None = None, **headers: Any) -> Req:
    """A GET with these headers (``If_Match=`` names ``If-Match``), query after ``?`` in path."""
    return _req("GET", path, answer, headers)


def HEAD(path: str, *, answer: Answer | None = None, **headers: Any) -> Req:
    return _req("HEAD", path, answer, headers)


def PUT(path: str, *, answer: Answer | None = None, **headers: Any) -> Req:
    return _req("PUT", path, answer, headers)


def POST(path: str, *, answer: Answer | None = None, **headers: Any) -> Req:
    return _req("POST", path, answer, headers)


def _req(method: str, path: str, answer: Answer | None, headers: dict[str, Any]) -> Req:
    complete = headers.pop("complete", True)
    path, _, query = path.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
    names = {k.replace("_", "-"): v for k, v in headers.items()}
    return Req(method, path, params, names, answer, complete)


class Playbook:
    """The fake upstream: matches what arrives against the script, answers, records."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.received: list[Received] = []
        self.failures: list[str] = []
        self._pending: list[list[Req]] = []
        self._free = False
        self._in_flight = 0
        self._lock = threading.Lock()
        self._runner: web.ServerRunner | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        server = web.Server(self._handle, auto_decompress=False)  # (bodies are opaque bytes)
        self._runner = web.ServerRunner(server, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        with self._lock:
            self._in_flight += 1
        try:
            return await self._answer(request)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _settle(self, timeout: float = 5.0) -> None:
        """Wait for the requests being received to be recorded (a body the proxy cuts short
        ends after the client has its answer)."""
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.005)

    async def _answer(self, request: web.BaseRequest) -> web.StreamResponse:
        raw_path, _, raw_query = request.raw_path.partition("?")
        try:
            # (read as a stream: BaseRequest.read() refuses bodies over 1 MiB)
            body, complete = await request.content.read(), True
        except Exception:  # the sender cut the body short: recorded, never answered
            body, complete = b"", False
        got = Received(
            request.method,
            unquote(raw_path),
            dict(parse_qsl(raw_query, keep_blank_values=True)),
            request.headers,
            body,
            complete,
        )
        with self._lock:
            self.received.append(got)
            found = self._match(got)
        if not complete:
            raise web.HTTPBadRequest()  # (nobody reads it)
        if isinstance(found, str):
            return Reply(500, (), _error_body("UnexpectedRequest", found)).response()
        reply = found(got) if callable(found) else found
        return reply.response()

    def _match(self, got: Received) -> Answer | str:
        """The answer to ``got``, or why it was not expected (then a failure of the test)."""
        why: str | None = None
        if "Authorization" not in got.headers:
            why = f"{got.describe()} is not signed"
        elif self._free:
            return self.store.handle
        elif not self._pending:
            why = f"{got.describe()}: no request expected"
        else:
            group = self._pending[0]
            reasons = []
            for index, step in enumerate(group):
                mismatch = step.mismatch(got)
                if mismatch is None:
                    del group[index]
                    if not group:
                        self._pending.pop(0)
                    return step.answer or self.store.handle
                reasons.append(f"{step.describe()} (got {mismatch})")
            why = f"{got.describe()} unexpected; expected " + " or ".join(reasons)
        self.failures.append(why)
        return why

    @contextmanager
    def expect(self, *steps: Req | Unordered) -> Iterator[list[Received]]:
        """Within the block, exactly these upstream requests (filled in: what came)."""
        with self._lock:
            self._clean()
            self._pending = [[s] if isinstance(s, Req) else list(s.steps) for s in steps]
            start = len(self.received)
        came: list[Received] = []
        error: BaseException | None = None
        try:
            yield came
        except BaseException as exc:
            error = exc
        self._settle()
        with self._lock:
            came[:] = self.received[start:]
            problems = self.failures + [
                f"never came: {s.describe()}" for group in self._pending for s in group
            ]
            self._pending, self.failures = [], []
        if problems:
            log = "\n  ".join(r.describe() for r in came)
            raise AssertionError("\n".join(problems) + f"\nreceived:\n  {log}") from error
        if error is not None:
            raise error

    @contextmanager
    def anything(self) -> Iterator[list[Received]]:
        """Within the block, any signed request is answered from the store (set-up)."""
        with self._lock:
            self._clean()
            self._free = True
            start = len(self.received)
        came: list[Received] = []
        try:
            yield came
        finally:
            self._settle()
            with self._lock:
                self._free = False
                came[:] = self.received[start:]

    def _clean(self) -> None:
        if self.failures or self._pending or self._free:
            raise AssertionError(f"the playbook is not idle: {self.failures} {self._pending}")

    def check_idle(self) -> None:
        """No failure and nothing pending (at the end of a test)."""
        self._settle()
        with self._lock:
            problems = list(self.failures)
        assert not problems, "\n".join(problems)


# ---- the store -----------------------------------------------------------------------------


def _error_body(code: str, message: str, resource: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{_text(message)}</Message>"
        f"<Resource>{_text(resource)}</Resource><RequestId>playbook</RequestId></Error>"
    ).encode()


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _xml(root: str, inner: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{S3_NS}">{inner}</{root}>'.encode()
    )


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def _bare(etag: str) -> str:
    value = etag.strip()
    return value[2:].strip('"') if value.startswith("W/") else value.strip('"')


def _matches(condition: str, etag: str) -> bool:
    return any(c.strip() == "*" or _bare(c) == _bare(etag) for c in condition.split(","))


def _date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def multipart_etag(parts: list[bytes]) -> str:
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(code)
        self.status, self.code, self.message = status, code, message or code


# What an object keeps of the request that wrote it, besides x-amz-meta-*.
_KEPT = ("content-type", "content-disposition", "content-language", "cache-control", "expires")


@dataclass
class Stored:
    data: bytes
    etag: str  # quoted
    headers: list[tuple[str, str]]  # metadata and the kept content headers
    tags: list[tuple[str, str]] = field(default_factory=list)
    modified: float = field(default_factory=lambda: float(int(time.time())))

    def metadata(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == f"x-amz-meta-{name}"), None)


@dataclass
class Upload:
    bucket: str
    key: str
    headers: list[tuple[str, str]]
    tags: list[tuple[str, str]]
    parts: dict[int, tuple[bytes, str]] = field(default_factory=dict)  # number: data, ETag


class Store:
    """Buckets of objects in memory, answering requests as S3 answers them."""

    def __init__(self) -> None:
        self.buckets: dict[str, dict[str, Stored]] = {}
        self.uploads: dict[str, Upload] = {}
        self._ids = itertools.count(1)

    def create_bucket(self, name: str) -> None:
        self.buckets.setdefault(name, {})

    def put(self, bucket: str, key: str, data: bytes, **metadata: str) -> Stored:
        """Store an object directly (as another writer of the bucket would)."""
        headers = [(f"x-amz-meta-{k.replace('_', '-')}", v) for k, v in metadata.items()]
        stored = Stored(data, md5_etag(data), headers)
        self.buckets[bucket][key] = stored
        return stored

    def get(self, bucket: str, key: str) -> Stored:
        return self.buckets[bucket][key]

    # ---- dispatch ----------------------------------------------------------------------------

    def handle(self, got: Received) -> Reply:
        try:
            return self._dispatch(got)
        except S3Error as err:
            body = b"" if got.method == "HEAD" else _error_body(err.code, err.message, got.path)
            return Reply(err.status, (("Content-Type", "application/xml"),), body)

    def _dispatch(self, got: Received) -> Reply:
        if got.bucket not in self.buckets:
            raise S3Error(404, "NoSuchBucket", "The specified bucket does not exist")
        q, m = got.query, got.method
        if got.key is None:
            if m == "GET" and q.get("list-type") == "2":
                return self._list_v2(got)
            raise S3Error(501, "NotImplemented", f"the playbook's store has no {m} {q}")
        if "tagging" in q:
            return self._tagging(got)
        if m == "GET" and "attributes" in q:
            return self._attributes(got)
        if m == "POST" and "uploads" in q:
            return self._create(got)
        if "uploadId" in q:
            upload = self.uploads.get(q["uploadId"])
            if upload is None or (upload.bucket, upload.key) != (got.bucket, got.key):
                raise S3Error(404, "NoSuchUpload", "The specified upload does not exist.")
            if m == "PUT":
                return self._upload_part(got, upload)
            if m == "GET":
                return self._list_parts(got, upload)
            if m == "POST":
                return self._complete(got, upload)
            if m == "DELETE":
                del self.uploads[q["uploadId"]]
                return Reply(204)
        if q:
            raise S3Error(501, "NotImplemented", f"the playbook's store has no {m} {q}")
        if m == "PUT" and "x-amz-copy-source" in got.headers:
            return self._copy(got)
        if m == "PUT":
            return self._put(got)
        if m in ("GET", "HEAD"):
            return self._get(got)
        if m == "DELETE":
            self.buckets[got.bucket].pop(got.key or "", None)
            return Reply(204)
        raise S3Error(405, "MethodNotAllowed")

    def _object(self, bucket: str, key: str | None) -> Stored:
        found = self.buckets.get(bucket, {}).get(key or "")
        if found is None:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.")
        return found

    # ---- reads -------------------------------------------------------------------------------

    def _get(self, got: Received) -> Reply:
        obj = self._object(got.bucket, got.key)
        h = got.headers
        if "If-Match" in h and not _matches(h["If-Match"], obj.etag):
            raise S3Error(412, "PreconditionFailed", "At least one of the preconditions failed")
        since = _date(h.get("If-Unmodified-Since", ""))
        if "If-Match" not in h and since is not None and obj.modified > since:
            raise S3Error(412, "PreconditionFailed", "At least one of the preconditions failed")
        described = (("ETag", obj.etag), ("Last-Modified", formatdate(obj.modified, usegmt=True)))
        if "If-None-Match" in h and _matches(h["If-None-Match"], obj.etag):
            return Reply(304, described)
        since = _date(h.get("If-Modified-Since", ""))
        if "If-None-Match" not in h and since is not None and obj.modified <= since:
            return Reply(304, described)
        headers = [
            *described,
            ("Accept-Ranges", "bytes"),
            *obj.headers,
            *([("x-amz-tagging-count", str(len(obj.tags)))] if obj.tags else []),
        ]
        if not any(k.lower() == "content-type" for k, _ in obj.headers):
            headers.append(("Content-Type", "binary/octet-stream"))
        total = len(obj.data)
        span = _range(h.get("Range"), total)
        if span is None:
            body, status = obj.data, 200
        else:
            first, last = span
            body, status = obj.data[first : last + 1], 206
            headers.append(("Content-Range", f"bytes {first}-{last}/{total}"))
        headers.append(("Content-Length", str(len(body))))
        return Reply(status, tuple(headers), b"" if got.method == "HEAD" else body)

    def _attributes(self, got: Received) -> Reply:
        obj = self._object(got.bucket, got.key)
        wanted = {a.strip() for a in got.headers.get("x-amz-object-attributes", "").split(",")}
        inner = "".join(
            text
            for name, text in (
                ("ETag", f"<ETag>{_bare(obj.etag)}</ETag>"),
                ("StorageClass", "<StorageClass>STANDARD</StorageClass>"),
                ("ObjectSize", f"<ObjectSize>{len(obj.data)}</ObjectSize>"),
            )
            if name in wanted
        )
        return _xml_reply(_xml("GetObjectAttributesResponse", inner))

    def _list_v2(self, got: Received) -> Reply:
        prefix = got.query.get("prefix", "")
        url = got.query.get("encoding-type") == "url"

        def name(key: str) -> str:
            return quote_plus(key, safe="/") if url else _text(key)

        objects = sorted(
            ((k, o) for k, o in self.buckets[got.bucket].items() if k.startswith(prefix)),
            key=lambda item: item[0],
        )
        entries = "".join(
            f"<Contents><Key>{name(k)}</Key><LastModified>{_iso(o.modified)}</LastModified>"
            f"<ETag>{_text(o.etag)}</ETag><Size>{len(o.data)}</Size>"
            "<StorageClass>STANDARD</StorageClass></Contents>"
            for k, o in objects
        )
        inner = (
            f"<Name>{got.bucket}</Name><Prefix>{name(prefix)}</Prefix>"
            f"<KeyCount>{len(objects)}</KeyCount><MaxKeys>1000</MaxKeys>"
            f"{'<EncodingType>url</EncodingType>' if url else ''}"
            f"<IsTruncated>false</IsTruncated>{entries}"
        )
        return _xml_reply(_xml("ListBucketResult", inner))

    # ---- writes ------------------------------------------------------------------------------

    def _put(self, got: Received) -> Reply:
        data = _payload(got)
        self._write_conditions(got)
        obj = Stored(data, md5_etag(data), _kept(got.headers), _tags(got.headers))
        self.buckets[got.bucket][got.key or ""] = obj
        return Reply(200, (("ETag", obj.etag),))

    def _write_conditions(self, got: Received) -> None:
        current = self.buckets[got.bucket].get(got.key or "")
        if_match, if_none_match = got.headers.get("If-Match"), got.headers.get("If-None-Match")
        if if_match is not None and current is None:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.")
        if if_match is not None and current is not None and not _matches(if_match, current.etag):
            raise S3Error(412, "PreconditionFailed", "At least one of the preconditions failed")
        if if_none_match is not None and current and _matches(if_none_match, current.etag):
            raise S3Error(412, "PreconditionFailed", "At least one of the preconditions failed")

    def _copy_source(self, got: Received) -> Stored:
        source = unquote(got.headers["x-amz-copy-source"].partition("?")[0]).lstrip("/")
        bucket, _, key = source.partition("/")
        obj = self._object(bucket, key)
        if_match = got.headers.get("x-amz-copy-source-if-match")
        if_none_match = got.headers.get("x-amz-copy-source-if-none-match")
        if if_match is not None and not _matches(if_match, obj.etag):
            raise S3Error(412, "PreconditionFailed", "At least one of the preconditions failed")
        if if_none_match is not None and _matches(if_none_match, obj.etag):
            raise S3Error(412, "PreconditionFailed", "At least one of the preconditions failed")
        return obj

    def _copy(self, got: Received) -> Reply:
        source = self._copy_source(got)
        replace_meta = got.headers.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE"
        same = unquote(got.headers["x-amz-copy-source"]).lstrip("/") == got.path.lstrip("/")
        if same and not replace_meta:
            raise S3Error(400, "InvalidRequest", "This copy request is illegal")
        headers = _kept(got.headers) if replace_meta else list(source.headers)
        replace_tags = got.headers.get("x-amz-tagging-directive", "COPY").upper() == "REPLACE"
        tags = _tags(got.headers) if replace_tags else list(source.tags)
        obj = Stored(source.data, md5_etag(source.data), headers, tags)
        self.buckets[got.bucket][got.key or ""] = obj
        inner = f"<LastModified>{_iso(obj.modified)}</LastModified><ETag>{_text(obj.etag)}</ETag>"
        return _xml_reply(_xml("CopyObjectResult", inner))

    def _create(self, got: Received) -> Reply:
        upload_id = f"upload-{next(self._ids)}"
        key = got.key or ""
        self.uploads[upload_id] = Upload(got.bucket, key, _kept(got.headers), _tags(got.headers))
        inner = (
            f"<Bucket>{got.bucket}</Bucket><Key>{_text(key)}</Key><UploadId>{upload_id}</UploadId>"
        )
        return _xml_reply(_xml("InitiateMultipartUploadResult", inner))

    def _upload_part(self, got: Received, upload: Upload) -> Reply:
        number = int(got.query["partNumber"])
        if "x-amz-copy-source" in got.headers:
            source = self._copy_source(got).data
            span = got.headers.get("x-amz-copy-source-range")
            if span is not None:
                first, _, last = span.removeprefix("bytes=").partition("-")
                if int(last) >= len(source):
                    raise S3Error(416, "InvalidRange", "The requested range is not satisfiable")
                source = source[int(first) : int(last) + 1]
            upload.parts[number] = (source, md5_etag(source))
            etag = _text(upload.parts[number][1])
            inner = f"<LastModified>{_iso(time.time())}</LastModified><ETag>{etag}</ETag>"
            return _xml_reply(_xml("CopyPartResult", inner))
        data = _payload(got)
        upload.parts[number] = (data, md5_etag(data))
        return Reply(200, (("ETag", upload.parts[number][1]),))

    def _list_parts(self, got: Received, upload: Upload) -> Reply:
        marker = int(got.query.get("part-number-marker") or 0)
        most = int(got.query.get("max-parts") or 1000)
        numbers = sorted(n for n in upload.parts if n > marker)
        shown, truncated = numbers[:most], len(numbers) > most
        entries = "".join(
            f"<Part><PartNumber>{n}</PartNumber><LastModified>{_iso(time.time())}</LastModified>"
            f"<ETag>{_text(upload.parts[n][1])}</ETag><Size>{len(upload.parts[n][0])}</Size></Part>"
            for n in shown
        )
        inner = (
            f"<Bucket>{upload.bucket}</Bucket><Key>{_text(upload.key)}</Key>"
            f"<UploadId>{got.query['uploadId']}</UploadId><PartNumberMarker>{marker}"
            f"</PartNumberMarker><NextPartNumberMarker>{shown[-1] if shown else marker}"
            f"</NextPartNumberMarker><MaxParts>{most}</MaxParts>"
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{entries}"
        )
        return _xml_reply(_xml("ListPartsResult", inner))

    def _complete(self, got: Received, upload: Upload) -> Reply:
        root = ET.fromstring(got.body)
        listed = [
            (int(_child(part, "PartNumber")), _child(part, "ETag"))
            for part in root
            if part.tag.rsplit("}", 1)[-1] == "Part"
        ]
        if not listed:
            raise S3Error(400, "MalformedXML", "The XML you provided was not well-formed")
        if [n for n, _ in listed] != sorted({n for n, _ in listed}):
            raise S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending order.")
        for number, etag in listed:
            part = upload.parts.get(number)
            if part is None or _bare(part[1]) != _bare(etag):
                raise S3Error(400, "InvalidPart", "One or more of the specified parts not found.")
        self._write_conditions(got)
        datas = [upload.parts[n][0] for n, _ in listed]
        obj = Stored(b"".join(datas), multipart_etag(datas), upload.headers, upload.tags)
        self.buckets[got.bucket][upload.key] = obj
        del self.uploads[got.query["uploadId"]]
        inner = (
            f"<Location>http://127.0.0.1{quote(got.path)}</Location><Bucket>{got.bucket}</Bucket>"
            f"<Key>{_text(upload.key)}</Key><ETag>{_text(obj.etag)}</ETag>"
        )
        return _xml_reply(_xml("CompleteMultipartUploadResult", inner))

    def _tagging(self, got: Received) -> Reply:
        obj = self._object(got.bucket, got.key)
        if got.method == "GET":
            tags = "".join(
                f"<Tag><Key>{_text(k)}</Key><Value>{_text(v)}</Value></Tag>" for k, v in obj.tags
            )
            return _xml_reply(_xml("Tagging", f"<TagSet>{tags}</TagSet>"))
        if got.method == "DELETE":
            obj.tags = []
            return Reply(204)
        _payload(got)  # (its Content-MD5)
        root = ET.fromstring(got.body)
        obj.tags = [
            (_child(tag, "Key"), _child(tag, "Value"))
            for tag in root.iter()
            if tag.tag.rsplit("}", 1)[-1] == "Tag"
        ]
        return Reply(200)


def _xml_reply(body: bytes) -> Reply:
    return Reply(200, (("Content-Type", "application/xml"),), body)


def _child(element: ET.Element, name: str) -> str:
    for child in element:
        if child.tag.rsplit("}", 1)[-1] == name:
            return child.text or ""
    raise S3Error(400, "MalformedXML", f"no {name}")


def _kept(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    kept = [(k.lower(), v) for k, v in headers.items() if k.lower().startswith("x-amz-meta-")]
    kept += [(k.lower(), v) for k, v in headers.items() if k.lower() in _KEPT]
    encoding = [
        e.strip()
        for e in headers.get("Content-Encoding", "").split(",")
        if e.strip() and e.strip() != "aws-chunked"
    ]
    return kept + ([("content-encoding", ",".join(encoding))] if encoding else [])


def _tags(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    return parse_qsl(headers.get("x-amz-tagging", ""), keep_blank_values=True)


def _range(value: str | None, total: int) -> tuple[int, int] | None:
    """The inclusive span of a single ``bytes=`` range (``None``: the whole object)."""
    if value is None or not value.startswith("bytes=") or "," in value:
        return None
    first_text, _, last_text = value.removeprefix("bytes=").partition("-")
    if not first_text:
        count = int(last_text)
        if count == 0 or total == 0:
            raise S3Error(416, "InvalidRange", "The requested range is not satisfiable")
        return max(0, total - count), total - 1
    first = int(first_text)
    last = min(int(last_text), total - 1) if last_text else total - 1
    if first >= total:
        raise S3Error(416, "InvalidRange", "The requested range is not satisfiable")
    return first, last


def _payload(got: Received) -> bytes:
    """The body a write stores: aws-chunked framing decoded, its checksums verified."""
    body, trailers = got.body, dict[str, str]()
    encoding = got.headers.get("Content-Encoding", "")
    if "aws-chunked" in encoding or got.headers.get("x-amz-content-sha256", "").startswith(
        "STREAMING-"
    ):
        body, trailers = _decode_chunked(got.body)
        if len(body) != int(got.headers["x-amz-decoded-content-length"]):
            raise S3Error(400, "IncompleteBody", "x-amz-decoded-content-length differs")
    md5 = got.headers.get("Content-MD5")
    if md5 is not None and base64.b64decode(md5) != hashlib.md5(body).digest():
        raise S3Error(400, "BadDigest", "The Content-MD5 you specified did not match.")
    crc = trailers.get("x-amz-checksum-crc32") or got.headers.get("x-amz-checksum-crc32")
    if crc is not None and base64.b64decode(crc) != zlib.crc32(body).to_bytes(4, "big"):
        raise S3Error(400, "BadDigest", "The CRC32 you specified did not match the calculated.")
    return body


def _decode_chunked(data: bytes) -> tuple[bytes, dict[str, str]]:
    out, at = bytearray(), 0
    while True:
        end = data.index(b"\r\n", at)
        size = int(data[at:end].split(b";")[0], 16)
        at = end + 2
        if size == 0:
            break
        out += data[at : at + size]
        if data[at + size : at + size + 2] != b"\r\n":
            raise S3Error(400, "IncompleteBody", "aws-chunked framing is broken")
        at += size + 2
    trailers = {}
    for line in data[at:].decode().splitlines():
        name, colon, value = line.partition(":")
        if colon:
            trailers[name.strip().lower()] = value.strip()
    return bytes(out), trailers
