"""The request handler: applies the pure core to real requests (served by s3proxy.server.shell).

Per request: parse and classify (s3proxy.core.request), then hand over to the writer (encrypting
uploads), the reader (decrypting downloads) or pass the request through with the proxy's own
signature. Every :class:`S3ProxyError` becomes an S3 error document here, and only here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from s3proxy.config import Config
from s3proxy.core.access import cors_headers, host_allowed, origin_allowed
from s3proxy.core.errors import (
    AccessDeniedByProxy,
    BadRequest,
    IncompleteBody,
    IntegrityError,
    InternalError,
    InvalidRequest,
    MissingContentLength,
    NotImplementedByProxy,
    RangeError,
    RequestTimeout,
    S3ProxyError,
    SlowDown,
    error_document,
)
from s3proxy.core.headers import upstream_request_headers
from s3proxy.core.request import Action, Target, classify, parse_target, virtual_host_bucket
from s3proxy.core.sigv4 import presigned_expiry
from s3proxy.core.sizes import READ_CHUNK
from s3proxy.keys.transit import KeyService
from s3proxy.server.attributes import Attributes
from s3proxy.server.bodies import RULES as BODY_RULES
from s3proxy.server.bodies import BodyRules, body_chunks
from s3proxy.server.clientauth import BodyHash, ClientAuthenticator, read_checked
from s3proxy.server.completion import Completer
from s3proxy.server.copies import Copier
from s3proxy.server.heads import HeadReader
from s3proxy.server.identity import WHOAMI_PATH, Identity
from s3proxy.server.listings import Listings
from s3proxy.server.partreads import PartReader
from s3proxy.server.readcontext import ReadContext
from s3proxy.server.readrules import NotModified
from s3proxy.server.reads import Reader
from s3proxy.server.recopy import CopyContext
from s3proxy.server.relay import Aborted, abort, relay
from s3proxy.server.sending import PlaintextSender
from s3proxy.server.tagging import TaggingRequests
from s3proxy.server.writes import Writer, is_aws_chunked
from s3proxy.store.objects import NameRule, ObjectInspector
from s3proxy.store.sharedfacts import SharedFacts
from s3proxy.telemetry import accesslog
from s3proxy.telemetry.accesslog import upstream_bytes
from s3proxy.upstream.client import Upstream

if TYPE_CHECKING:  # (redis is imported only where a shared cache is configured)
    from s3proxy.store.sharedcache import SharedCache

log = logging.getLogger("s3proxy")
CORS_ORIGIN = "s3proxy.cors_origin"  # request key: the allowed Origin of a cross-origin request
STARTED = web.RequestKey("s3proxy.response_started", bool)  # a response is being sent

SIGNING_BUFFER_LIMIT = 1024 * 1024  # pass-through bodies up to this size are signed by hash
HOST_VERDICTS = 256  # Host values whose verdict is remembered

Handler = Callable[[web.Request, Target], Awaitable[web.StreamResponse]]


class Proxy:
    def __init__(
        self,
        config: Config,
        keys: KeyService,
        upstream: Upstream,
        identity: Identity | None = None,
        shared_cache: SharedCache | None = None,
    ) -> None:
        self.config = config
        self.upstream = upstream
        self.identity = identity
        self._in_flight = 0
        self._hosts: dict[str | None, bool] = {}  # Host value -> allowed (bounded, below)
        self._auth = ClientAuthenticator(config.client_keys) if config.client_keys else None
        self._bodies = BodyRules(config.bodies)
        names = NameRule(config.bind_names, config.unbound)
        objects = ObjectInspector(keys, upstream, names, SharedFacts(shared_cache, keys))
        self.objects = objects  # (what the store holds of objects, its caches)
        sender = PlaintextSender(objects)
        read_context = ReadContext(config, upstream, objects, sender)
        reader = Reader(read_context)
        heads = HeadReader(read_context)
        parts = PartReader(read_context)
        listings = Listings(config, upstream, objects)
        writer = Writer(config, keys, upstream, objects)
        completer = Completer(config, upstream, objects, writer)
        copier = Copier(CopyContext(config, upstream, objects, writer))
        attributes = Attributes(config, upstream, objects)
        self._handlers: dict[Action, Handler] = {
            Action.PASS_THROUGH: self._pass_through,
            Action.PUT_OBJECT: writer.encrypt_upload,
            Action.UPLOAD_PART: writer.encrypt_upload,
            Action.CREATE_MULTIPART: writer.create_multipart,
            Action.COMPLETE_MULTIPART: completer.complete_multipart,
            Action.COPY_OBJECT: copier.copy_object,
            Action.UPLOAD_PART_COPY: copier.upload_part_copy,
            Action.GET_OBJECT: reader.get_object,
            Action.HEAD_OBJECT: heads.head_object,
            Action.READ_PART: parts.read_part,
            Action.LIST_PARTS: listings.list_parts,
            Action.LIST_OBJECTS: listings.list_objects,
            Action.GET_ATTRIBUTES: attributes.get_object_attributes,
            Action.OBJECT_TAGGING: TaggingRequests(objects.tags).handle,
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Refuse, classify, authenticate and dispatch a request, and record it. Every
        :class:`S3ProxyError` is answered here as an S3 error document, and only here."""
        early = self._answer_early(request)
        if early is not None:
            return early
        if self._is_whoami(request) and self.identity is not None and self._auth is None:
            return await self.identity.whoami(request)
        exchange = _Exchange(request)
        request[BODY_RULES] = self._bodies
        self._in_flight += 1
        try:
            return await self._serve(request, exchange)
        except Aborted as cut:
            exchange.record.integrity = isinstance(cut.__cause__, IntegrityError)
            raise
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            raise  # the client went away: nobody to answer
        except NotModified as answer:
            exchange.record.status = 304
            return web.Response(status=304, headers=answer.headers)
        except S3ProxyError as err:
            return exchange.error(err)
        except Exception:
            return exchange.defect()
        finally:
            self._bodies.budget.release(request)
            self._in_flight -= 1
            exchange.finish()

    async def _serve(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        """A counted request: authenticated, classified and handed to its handler."""
        if self._in_flight > self.config.max_requests:
            raise SlowDown()
        if self._authenticate(request) and self.identity is not None:
            whoami = await self.identity.whoami(request)
            exchange.record.status = whoami.status
            return whoami
        target, action = self._classify(request, exchange)
        resp = await self._handlers[action](request, target)
        exchange.answered(resp)
        return resp

    def _answer_early(self, request: web.Request) -> web.Response | None:
        """What is answered before a request is counted: a refusal (:meth:`_refuse_foreign`),
        a CORS preflight."""
        refused = self._refuse_foreign(request)
        if refused is not None:
            return refused
        if request.method == "OPTIONS":
            return self._preflight(request)
        return None

    def _authenticate(self, request: web.Request) -> bool:
        """The client's signature checked (when clients are authenticated); whether the
        request is then an authenticated ``whoami``."""
        if self._auth is not None:
            self._auth.verify(request)
            return self._is_whoami(request)
        if "X-Amz-Expires" in request.query:  # S3 refuses such a URL, signed or not
            presigned_expiry(request.query["X-Amz-Expires"])
        return False

    def _classify(self, request: web.Request, exchange: _Exchange) -> tuple[Target, Action]:
        """The request's target and action, recorded; aws-chunked bodies only for uploads."""
        target = parse_target(
            request.raw_path, request.headers.get("Host"), self.config.virtual_host_suffixes
        )
        record = exchange.record
        exchange.resource = target.resource
        record.bucket, record.key = target.bucket, target.key
        decision = classify(request.method, target, request.headers)
        record.operation = decision.operation
        if decision.action not in (Action.PUT_OBJECT, Action.UPLOAD_PART) and is_aws_chunked(
            request.headers
        ):
            raise NotImplementedByProxy(
                f"s3proxy does not support aws-chunked request bodies for {decision.operation}."
            )
        return target, decision.action

    def _refuse_foreign(self, request: web.Request) -> web.Response | None:
        """403 for a request that names another host (DNS rebinding) or comes from a browser
        origin nobody allowed; an allowed origin's responses carry CORS headers."""
        config = self.config
        host = request.headers.get("Host")
        allowed = self._hosts.get(host)
        if allowed is None:
            allowed = host_allowed(host, config.virtual_host_suffixes, config.allowed_hosts)
            if len(self._hosts) >= HOST_VERDICTS:
                self._hosts.clear()  # hostile clients naming many hosts only cost the parse
            self._hosts[host] = allowed
        if not allowed:
            return _refuse(
                request,
                AccessDeniedByProxy(
                    "The Host header names no address of this proxy (S3PROXY_ALLOWED_HOSTS)."
                ),
            )
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        if not origin_allowed(origin, config.cors_origins):
            return _refuse(
                request,
                AccessDeniedByProxy(
                    "Cross-origin requests from this origin are not allowed (S3PROXY_CORS_ORIGINS)."
                ),
            )
        request[CORS_ORIGIN] = origin
        return None

    def _preflight(self, request: web.Request) -> web.Response:
        """CORS preflight, answered by the proxy (never the bucket's CORS rules)."""
        if "Origin" not in request.headers:  # as S3 answers a preflight without one
            return _refuse(
                request, BadRequest("Insufficient information. Origin request header needed.")
            )
        if "Access-Control-Request-Method" not in request.headers:
            return _refuse(request, BadRequest("Invalid Access-Control-Request-Method: null"))
        origin = request.get(CORS_ORIGIN)
        if origin is None:
            return _refuse(
                request, AccessDeniedByProxy("CORS preflight without an allowed Origin.")
            )
        requested = request.headers.get("Access-Control-Request-Headers", "")
        return web.Response(status=200, headers=cors_headers(origin, requested))

    def _is_whoami(self, request: web.Request) -> bool:
        # "_s3proxy" is no valid bucket name, so path-style S3 requests never look like this.
        host = request.headers.get("Host")
        return (
            request.method == "GET"
            and request.path == WHOAMI_PATH
            and virtual_host_bucket(host, self.config.virtual_host_suffixes) is None
        )

    async def _pass_through(self, request: web.Request, target: Target) -> web.StreamResponse:
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        body: bytes | AsyncIterator[bytes] | None = None
        exact: _ExactBody | None = None
        length = request.content_length
        if request.can_read_body:
            if length is not None and length <= SIGNING_BUFFER_LIMIT:
                body = await read_checked(
                    request, length, InvalidRequest("The body is longer than its Content-Length.")
                )
                if len(body) != length:
                    raise IncompleteBody("The request body ended before its declared length.")
            elif length is not None:
                exact = _ExactBody(request, length)
                body = exact.chunks()
            else:
                raise MissingContentLength("You must provide the Content-Length HTTP header.")
        elif request.method in ("PUT", "POST"):
            body = b""
        try:
            upstream_resp = await self.upstream.send(request.method, target, headers, body, length)
        except S3ProxyError:
            if exact is not None and exact.failure is not None:
                raise exact.failure from None
            raise
        async with upstream_resp:
            return await relay(request, upstream_resp)


class _Exchange:
    """One counted request, from its start to its access-log line: the record, the resource
    its log lines name, the upstream bytes received for it; and its answers to errors."""

    __slots__ = ("received", "record", "request", "resource")

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.record = accesslog.begin(request.method)
        self.resource = request.path  # the parsed target's, once known
        self.received = [0]
        upstream_bytes.set(self.received)

    def answered(self, resp: web.StreamResponse) -> None:
        self.record.status = resp.status
        self.record.bytes_out = _body_length(self.request, resp)

    def error(self, err: S3ProxyError) -> web.Response:
        """The S3 error document of ``err``, logged (the one place errors become answers)."""
        request, record = self.request, self.record
        integrity = record.integrity = isinstance(err, IntegrityError)
        record.error_code = err.code
        log.log(
            logging.ERROR if integrity or err.status >= 500 else logging.INFO,
            "%s %s %s: %s %s",
            request.method,
            self.resource,
            record.operation,
            err.code,
            err.message,
            extra={"request_id": record.request_id, "integrity": integrity},
        )
        resp = _error_response(request, err, self.resource, record.request_id)
        self.answered(resp)
        return resp

    def defect(self) -> web.Response:
        """A defect (the exception being handled): logged with its traceback, answered as S3
        answers its own (never a bare 500 without a log line); a response already under way
        is cut instead."""
        request, record = self.request, self.record
        log.exception(
            "%s %s %s: unexpected error",
            request.method,
            self.resource,
            record.operation,
            extra={"request_id": record.request_id},
        )
        record.status, record.error_code = 500, "InternalError"
        if request.get(STARTED):
            abort(request)
            raise Aborted() from None
        defect = InternalError("We encountered an internal error. Please try again.")
        resp = _error_response(request, defect, self.resource, record.request_id)
        record.bytes_out = _body_length(request, resp)
        return resp

    def finish(self) -> None:
        """The access-log line."""
        record = self.record
        record.upstream_bytes = self.received[0]
        record.bytes_in = self.request.content.total_bytes
        accesslog.finish(record, self.resource)


def _error_response(
    request: web.Request, err: S3ProxyError, resource: str, request_id: str
) -> web.Response:
    headers = {"Content-Type": "application/xml", "x-amz-request-id": request_id}
    if isinstance(err, RangeError):
        headers["Content-Range"] = f"bytes */{err.total}"
    if request.method == "HEAD":
        resp = web.Response(status=err.status, headers=headers)
    else:
        body = error_document(err.code, err.message, resource, request_id)
        resp = web.Response(status=err.status, body=body, headers=headers)
    if isinstance(err, RequestTimeout):
        resp.force_close()  # as S3 does: the client stopped sending; its body is not read
    return resp


def _refuse(request: web.Request, err: S3ProxyError) -> web.Response:
    """An error answered before the request is parsed, with its own access-log line."""
    record = accesslog.begin(request.method)
    record.status, record.error_code = err.status, err.code
    resp = _error_response(request, err, request.path, record.request_id)
    record.bytes_out = _body_length(request, resp)
    accesslog.finish(record, request.path)
    return resp


def _body_length(request: web.Request, resp: web.StreamResponse) -> int:
    """The body bytes of a response (its declared length; a streamed one is cut if shorter)."""
    if request.method == "HEAD" or resp.status in (204, 304):
        return 0
    return resp.content_length or 0


class _ExactBody:
    """A streamed pass-through body, its last piece held back until its length and signed hash
    are checked: the upstream never receives a whole body that fails them (nor one that
    stalls). Its error, which the upstream client reports only as a failed send, is kept in
    :attr:`failure` for the sender to raise."""

    def __init__(self, request: web.Request, length: int) -> None:
        self._request = request
        self._length = length
        self._signed = BodyHash.of(request)
        self.failure: S3ProxyError | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        signed = self._signed
        received = 0
        held: bytes | None = None
        try:
            async for chunk in body_chunks(self._request, READ_CHUNK):
                received += len(chunk)
                signed.update(chunk)
                if held is not None:
                    yield held
                held = chunk
            if received != self._length:
                raise InvalidRequest("The request body does not match its Content-Length.")
            signed.verify()
        except S3ProxyError as err:
            self.failure = err
            raise
        if held is not None:
            yield held


def response_starting(request: web.Request, response: web.StreamResponse) -> None:
    """As a response starts: the request is marked (its status line may have gone out: no
    error document now), and an allowed origin's response gets its CORS headers."""
    request[STARTED] = True
    origin = request.get(CORS_ORIGIN)
    if origin is not None and request.method != "OPTIONS":
        for name, value in cors_headers(origin):
            response.headers[name] = value
