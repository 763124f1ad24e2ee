"""The HTTP shell: an aiohttp application that applies the pure core to real requests.

Per request: parse and classify (s3proxy.request), then either pass the request through with the
proxy's signature, encrypt a PutObject body while streaming it upstream, or decrypt a GetObject
body while streaming it back, authenticating every segment before its plaintext is released.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from s3proxy.checksums import verifier_for
from s3proxy.config import Config
from s3proxy.errors import (
    AccessDeniedByProxy,
    IncompleteBody,
    IntegrityError,
    InvalidRequest,
    MissingContentLength,
    NotImplementedByProxy,
    S3ProxyError,
    error_document,
)
from s3proxy.format import Header, StreamDecryptor, StreamEncryptor, parse_header
from s3proxy.headers import (
    MARKER_HEADER,
    Headers,
    client_response_headers,
    get_header,
    marker_value,
    parse_marker,
    upstream_request_headers,
)
from s3proxy.keys import KeyService
from s3proxy.request import Action, Target, classify, parse_target
from s3proxy.sizes import (
    HEADER_SIZE,
    RangeNotSatisfiable,
    ciphertext_length,
    parse_range,
    plaintext_length,
    span_for_range,
)
from s3proxy.upstream import Upstream

log = logging.getLogger("s3proxy")

READ_CHUNK = 256 * 1024
SIGNING_BUFFER_LIMIT = 1024 * 1024  # pass-through bodies up to this size are signed by hash


class _Aborted(Exception):
    """The response had started when an error came; the connection was cut."""


@dataclass(frozen=True)
class _Encrypted:
    """What the upstream's response says about an object written by the proxy."""

    segment_size: int
    stored_length: int  # total ciphertext length


def _encrypted_info(resp: aiohttp.ClientResponse, stored_length: int | None) -> _Encrypted | None:
    marker = resp.headers.get(MARKER_HEADER)
    if marker is None:
        return None
    fields = parse_marker(marker)
    seg = fields.get("seg", "")
    if fields.get("v") != "1" or not seg.isdigit() or int(seg) < 1:
        raise IntegrityError(
            "The stored object carries an s3proxy marker this version cannot read."
        )
    if stored_length is None:
        raise IntegrityError("The upstream did not report the stored object's length.")
    return _Encrypted(int(seg), stored_length)


def _content_range_total(resp: aiohttp.ClientResponse) -> int | None:
    value = resp.headers.get("Content-Range", "")
    total = value.rpartition("/")[2]
    return int(total) if total.isdigit() else None


def _content_length(resp: aiohttp.ClientResponse) -> int | None:
    value = resp.headers.get("Content-Length")
    return int(value) if value is not None and value.isdigit() else None


class Proxy:
    def __init__(self, config: Config, keys: KeyService, upstream: Upstream) -> None:
        self.config = config
        self.keys = keys
        self.upstream = upstream

    # ---- entry point -------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = secrets.token_hex(8).upper()
        started = time.monotonic()
        resource = request.path
        operation = "-"
        status = 0
        try:
            target = parse_target(
                request.raw_path, request.headers.get("Host"), self.config.virtual_host_suffixes
            )
            resource = target.resource
            self._refuse_streaming_payloads(request)
            decision = classify(request.method, target, request.headers)
            operation = decision.operation
            if decision.action is Action.PUT_OBJECT:
                resp = await self._put_object(request, target)
            elif decision.action is Action.GET_OBJECT:
                resp = await self._get_object(request, target)
            elif decision.action is Action.HEAD_OBJECT:
                resp = await self._head_object(request, target)
            else:
                resp = await self._pass_through(request, target)
            status = resp.status
            return resp
        except _Aborted:
            status = 0
            raise
        except S3ProxyError as err:
            status = err.status
            level = (
                logging.ERROR
                if isinstance(err, IntegrityError) or err.status >= 500
                else logging.INFO
            )
            log.log(
                level,
                "%s %s %s: %s %s",
                request.method,
                resource,
                operation,
                err.code,
                err.message,
                extra={"request_id": request_id, "integrity": isinstance(err, IntegrityError)},
            )
            return self._error_response(request, err, resource, request_id)
        finally:
            log.info(
                "%s %s %s -> %s in %.1f ms",
                request.method,
                resource,
                operation,
                status or "aborted",
                (time.monotonic() - started) * 1000,
                extra={"request_id": request_id},
            )

    def _error_response(
        self, request: web.Request, err: S3ProxyError, resource: str, request_id: str
    ) -> web.Response:
        headers = {"Content-Type": "application/xml", "x-amz-request-id": request_id}
        if isinstance(err, _RangeError):
            headers["Content-Range"] = f"bytes */{err.total}"
        body = error_document(err.code, err.message, resource, request_id)
        if request.method == "HEAD":
            return web.Response(status=err.status, headers=headers)
        return web.Response(status=err.status, body=body, headers=headers)

    @staticmethod
    def _refuse_streaming_payloads(request: web.Request) -> None:
        sha = request.headers.get("x-amz-content-sha256", "")
        encoding = request.headers.get("Content-Encoding", "").lower()
        if sha.upper().startswith("STREAMING-") or "aws-chunked" in encoding:
            raise NotImplementedByProxy(
                "s3proxy does not support aws-chunked (streaming) request bodies yet."
            )

    # ---- pass-through ------------------------------------------------------------------------

    async def _pass_through(self, request: web.Request, target: Target) -> web.StreamResponse:
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        body: bytes | AsyncIterator[bytes] | None = None
        length = request.content_length
        if request.can_read_body:
            if length is not None and length <= SIGNING_BUFFER_LIMIT:
                body = await request.read()
                if len(body) != length:
                    raise IncompleteBody("The request body ended before its declared length.")
            elif length is not None:
                body = _exact_body(request, length)
            else:
                raise MissingContentLength("You must provide the Content-Length HTTP header.")
        elif request.method in ("PUT", "POST"):
            body = b""
        upstream_resp = await self.upstream.send(request.method, target, headers, body, length)
        async with upstream_resp:
            return await self._relay(request, upstream_resp)

    async def _relay(
        self, request: web.Request, upstream_resp: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        resp = web.StreamResponse(status=upstream_resp.status, reason=upstream_resp.reason)
        _add_headers(resp, client_response_headers(upstream_resp.headers.items(), decrypted=False))
        length = _content_length(upstream_resp)
        if length is not None:
            resp.content_length = length
        await resp.prepare(request)
        if request.method != "HEAD" and upstream_resp.status not in (204, 304):
            try:
                async for chunk in upstream_resp.content.iter_chunked(READ_CHUNK):
                    await resp.write(chunk)
            except aiohttp.ClientError as exc:
                log.error("upstream response broke off: %s", type(exc).__name__)
                _abort(request)
                raise _Aborted() from exc
        await resp.write_eof()
        return resp

    # ---- PutObject ---------------------------------------------------------------------------

    async def _put_object(self, request: web.Request, target: Target) -> web.StreamResponse:
        length = request.content_length
        if length is None:
            raise MissingContentLength("You must provide the Content-Length HTTP header.")
        verifier = verifier_for(request.headers.items())
        seg = self.config.segment_size
        data_key = await self.keys.new_data_key()
        encryptor = StreamEncryptor(data_key.plaintext, data_key.wrapped, length, seg)
        headers = upstream_request_headers(request.headers.items(), encrypting=True)
        headers.append((MARKER_HEADER, marker_value(seg)))
        failure: list[S3ProxyError] = []

        async def body() -> AsyncIterator[bytes]:
            try:
                yield encryptor.header
                async for chunk in request.content.iter_chunked(READ_CHUNK):
                    verifier.update(chunk)
                    out = encryptor.feed(chunk)
                    if out:
                        yield out
                last = encryptor.finish()
                verifier.verify()
            except S3ProxyError as err:
                failure.append(err)
                raise
            except (aiohttp.ClientPayloadError, ConnectionError) as exc:
                failure.append(IncompleteBody("The request body was cut off."))
                raise failure[-1] from exc
            # Only a fully received and verified body gets its final segment: without it the
            # upstream never sees a complete request, so nothing is stored.
            yield last

        try:
            upstream_resp = await self.upstream.send(
                "PUT", target, headers, body(), ciphertext_length(length, seg)
            )
        except Exception:
            if failure:
                raise failure[0] from None
            raise
        async with upstream_resp:
            if failure:
                raise failure[0]
            checksums = [
                (name, value)
                for name, value in verifier.computed().items()
                if name.startswith("x-amz-checksum-")
            ]
            return await self._relay_small(request, upstream_resp, checksums)

    async def _relay_small(
        self, request: web.Request, upstream_resp: aiohttp.ClientResponse, extra: Headers
    ) -> web.StreamResponse:
        """Relay a write's response, whose checksums (if any) describe the ciphertext; the
        plaintext's verified checksums in ``extra`` replace them on success."""
        body = await upstream_resp.read()
        headers = [
            (k, v)
            for k, v in client_response_headers(upstream_resp.headers.items(), decrypted=True)
        ]
        if upstream_resp.status == 200:
            headers += extra
        resp = web.Response(status=upstream_resp.status, reason=upstream_resp.reason, body=body)
        _add_headers(resp, headers)
        return resp

    # ---- GetObject / HeadObject --------------------------------------------------------------

    def _check_unencrypted_allowed(self) -> None:
        if not self.config.allow_unencrypted:
            raise AccessDeniedByProxy(
                "The object was not written through s3proxy (it is not encrypted) and "
                "S3PROXY_UNENCRYPTED_OBJECTS=refuse."
            )

    async def _head_object(self, request: web.Request, target: Target) -> web.StreamResponse:
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        range_value = _pop_header(headers, "Range")
        upstream_resp = await self.upstream.send("HEAD", target, headers)
        async with upstream_resp:
            info = (
                _encrypted_info(upstream_resp, _content_length(upstream_resp))
                if upstream_resp.status == 200
                else None
            )
            if info is None:
                if upstream_resp.status == 200:
                    self._check_unencrypted_allowed()
                    if range_value is not None:
                        # Ask again with the range so the upstream answers it itself.
                        headers.append(("Range", range_value))
                        again = await self.upstream.send("HEAD", target, headers)
                        async with again:
                            return await self._relay(request, again)
                return await self._relay(request, upstream_resp)
            total = _plaintext_total(info)
            status, length, content_range = 200, total, None
            if range_value is not None:
                first_last = _client_range(range_value, total)
                if first_last is not None:
                    first, last = first_last
                    status, length = 206, last - first + 1
                    content_range = f"bytes {first}-{last}/{total}"
            resp = web.StreamResponse(status=status)
            _add_headers(
                resp, client_response_headers(upstream_resp.headers.items(), decrypted=True)
            )
            if content_range:
                resp.headers["Content-Range"] = content_range
            resp.content_length = length
            await resp.prepare(request)
            await resp.write_eof()
            return resp

    async def _get_object(self, request: web.Request, target: Target) -> web.StreamResponse:
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        range_value = _pop_header(headers, "Range")
        if range_value is not None:
            return await self._get_range(request, target, headers, range_value)
        upstream_resp = await self.upstream.send("GET", target, headers)
        async with upstream_resp:
            info = (
                _encrypted_info(upstream_resp, _content_length(upstream_resp))
                if upstream_resp.status == 200
                else None
            )
            if info is None:
                if upstream_resp.status == 200:
                    self._check_unencrypted_allowed()
                return await self._relay(request, upstream_resp)
            total = _plaintext_total(info)
            header = await self._read_header(upstream_resp, info, total)
            data_key = await self.keys.unwrap(header.wrapped_key)
            decryptor = StreamDecryptor(header, data_key)
            return await self._stream_plaintext(
                request,
                upstream_resp,
                decryptor,
                status=200,
                skip=0,
                length=total,
                content_range=None,
            )

    async def _get_range(
        self, request: web.Request, target: Target, headers: Headers, range_value: str
    ) -> web.StreamResponse:
        """A ranged GET: one request for the stream header (which also says whether the object
        is ours and how long it is), then one for exactly the segments that cover the range."""
        probe_headers = [*headers, ("Range", f"bytes=0-{HEADER_SIZE - 1}")]
        probe = await self.upstream.send("GET", target, probe_headers)
        async with probe:
            info = (
                _encrypted_info(probe, _content_range_total(probe)) if probe.status == 206 else None
            )
            if info is None:
                if probe.status not in (200, 206, 416):
                    return await self._relay(request, probe)
            else:
                total = _plaintext_total(info)
                header = await self._read_header(probe, info, total)
                etag = probe.headers.get("ETag")
        if info is None:
            # Not ours (or empty): let the upstream answer the client's own range.
            plain_headers = [*headers, ("Range", range_value)]
            plain = await self.upstream.send("GET", target, plain_headers)
            async with plain:
                if plain.status in (200, 206):
                    self._check_unencrypted_allowed()
                return await self._relay(request, plain)

        first_last = _client_range(range_value, total)
        if first_last is None:
            first, last, status, content_range = 0, total - 1, 200, None
        else:
            first, last = first_last
            status, content_range = 206, f"bytes {first}-{last}/{total}"
        data_key = await self.keys.unwrap(header.wrapped_key)
        if total == 0:
            span_headers = [(k, v) for k, v in headers if not k.lower().startswith("if-")]
            if etag:
                span_headers.append(("If-Match", etag))
            fetch = f"bytes={HEADER_SIZE}-"
            first_segment, last_segment, skip, length = 0, 0, 0, 0
        else:
            span = span_for_range(first, last, total, header.segment_size)
            span_headers = [(k, v) for k, v in headers if not k.lower().startswith("if-")]
            if etag:
                span_headers.append(("If-Match", etag))
            fetch = f"bytes={span.ciphertext_start}-{span.ciphertext_end}"
            first_segment, last_segment = span.first_segment, span.last_segment
            skip, length = span.skip, span.length
        span_headers.append(("Range", fetch))
        upstream_resp = await self.upstream.send("GET", target, span_headers)
        async with upstream_resp:
            if upstream_resp.status != 206:
                if upstream_resp.status == 412:
                    # The object changed between the two reads; report it as S3 would a race.
                    return await self._relay(request, upstream_resp)
                raise IntegrityError("The upstream did not return the requested ciphertext range.")
            decryptor = StreamDecryptor(header, data_key, first_segment, last_segment)
            return await self._stream_plaintext(
                request,
                upstream_resp,
                decryptor,
                status=status,
                skip=skip,
                length=length,
                content_range=content_range,
                source_headers=probe.headers.items(),
            )

    async def _read_header(
        self, upstream_resp: aiohttp.ClientResponse, info: _Encrypted, total: int
    ) -> Header:
        try:
            raw = await upstream_resp.content.readexactly(HEADER_SIZE)
        except (aiohttp.ClientError, EOFError) as exc:
            raise IntegrityError(
                "The stored object is shorter than its encryption header."
            ) from exc
        header = parse_header(raw)
        if header.segment_size != info.segment_size or header.plaintext_length != total:
            raise IntegrityError("The stored object's header does not match its size.")
        return header

    async def _stream_plaintext(
        self,
        request: web.Request,
        upstream_resp: aiohttp.ClientResponse,
        decryptor: StreamDecryptor,
        *,
        status: int,
        skip: int,
        length: int,
        content_range: str | None,
        source_headers: object = None,
    ) -> web.StreamResponse:
        """Decrypt the upstream body into the client's response. The first segment is
        authenticated before the response starts, so most failures get a proper S3 error;
        a later failure cuts the connection short of the announced Content-Length."""
        items = upstream_resp.headers.items() if source_headers is None else source_headers
        resp = web.StreamResponse(status=status)
        _add_headers(resp, client_response_headers(items, decrypted=True))  # type: ignore[arg-type]
        if content_range:
            resp.headers["Content-Range"] = content_range
        resp.content_length = length
        remaining_skip, remaining = skip, length
        chunks = upstream_resp.content.iter_chunked(READ_CHUNK)
        pending = b""
        try:
            while not decryptor.done and not pending:
                chunk = await anext(chunks, None)
                if chunk is None:
                    break
                pending = decryptor.feed(chunk)
        except aiohttp.ClientError as exc:
            raise IntegrityError("The upstream response broke off.") from exc
        if not decryptor.done and not pending:
            decryptor.finish()  # raises: the stored object is truncated
        await resp.prepare(request)
        try:
            while True:
                if pending:
                    if remaining_skip:
                        cut = min(remaining_skip, len(pending))
                        pending, remaining_skip = pending[cut:], remaining_skip - cut
                    out = pending[:remaining]
                    remaining -= len(out)
                    if out:
                        await resp.write(out)
                if decryptor.done:
                    break
                chunk = await anext(chunks, None)
                if chunk is None:
                    decryptor.finish()
                    break
                pending = decryptor.feed(chunk)
            if decryptor.unused:
                raise IntegrityError("The stored object is longer than its header declares.")
        except (IntegrityError, aiohttp.ClientError) as exc:
            log.error(
                "integrity error while streaming %s: %s",
                request.path,
                exc.message
                if isinstance(exc, IntegrityError)
                else f"upstream broke off ({type(exc).__name__})",
                extra={"integrity": True},
            )
            _abort(request)
            raise _Aborted() from exc
        await resp.write_eof()
        return resp


class _RangeError(S3ProxyError):
    status = 416
    code = "InvalidRange"

    def __init__(self, total: int) -> None:
        super().__init__("The requested range is not satisfiable")
        self.total = total


def _client_range(value: str, total: int) -> tuple[int, int] | None:
    try:
        return parse_range(value, total)
    except RangeNotSatisfiable as exc:
        raise _RangeError(total) from exc


def _plaintext_total(info: _Encrypted) -> int:
    try:
        return plaintext_length(info.stored_length, info.segment_size)
    except ValueError as exc:
        raise IntegrityError(f"The stored object has an impossible size: {exc}.") from exc


def _pop_header(headers: Headers, name: str) -> str | None:
    value = get_header(headers, name)
    headers[:] = [(k, v) for k, v in headers if k.lower() != name.lower()]
    return value


def _add_headers(resp: web.StreamResponse, headers: Headers) -> None:
    for name, value in headers:
        resp.headers.add(name, value)


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


async def _exact_body(request: web.Request, length: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in request.content.iter_chunked(READ_CHUNK):
        received += len(chunk)
        yield chunk
    if received != length:
        raise InvalidRequest("The request body does not match its Content-Length.")


def build_app(proxy: Proxy) -> web.Application:
    app = web.Application(client_max_size=SIGNING_BUFFER_LIMIT)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    return app
