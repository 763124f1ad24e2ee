"""The client's own tagging requests (GetObjectTagging, PutObjectTagging, DeleteObjectTagging):
they see and change only their own tags; the proxy's manifest tag (store/tags.py) is hidden
from them and kept through their changes."""

from __future__ import annotations

from aiohttp import web

from s3proxy.core.errors import MalformedXML
from s3proxy.core.headers import Headers, upstream_request_headers
from s3proxy.core.manifest import MANIFEST_TAG
from s3proxy.core.request import Target
from s3proxy.core.s3xml import tag_set, tagging_body
from s3proxy.server.clientauth import read_checked
from s3proxy.server.relay import relay, relay_body
from s3proxy.store.tags import Tags, content_md5, tagging_target

TAGGING_BODY_LIMIT = 64 * 1024


class TaggingRequests:
    def __init__(self, tags: Tags) -> None:
        self.tags = tags
        self.upstream = tags.upstream

    async def handle(self, request: web.Request, target: Target) -> web.StreamResponse:
        if request.method == "GET":
            return await self._get(request, target)
        body = await read_checked(
            request, TAGGING_BODY_LIMIT, MalformedXML("The tagging document is too large.")
        )
        manifest = await self.tags.manifest(target)
        headers = Headers(upstream_request_headers(request.headers.items(), encrypting=False))
        if manifest is None:  # nothing of the proxy's to keep
            resp = await self.upstream.send(request.method, target, headers, body or None)
            async with resp:
                return await relay(request, resp)
        tags = [] if request.method == "DELETE" else tag_set(body)
        tags = [(k, v) for k, v in tags if k != MANIFEST_TAG]
        new_body = tagging_body([*tags, (MANIFEST_TAG, manifest)])
        headers = headers.without("Content-MD5", "Content-Type").plus(
            [("Content-Type", "application/xml"), ("Content-MD5", content_md5(new_body))]
        )
        resp = await self.upstream.send("PUT", tagging_target(target), headers, new_body)
        async with resp:
            data = await resp.read()
            if request.method == "DELETE" and resp.status == 200:
                return relay_body(resp, b"", status=204)
            return relay_body(resp, data)

    async def _get(self, request: web.Request, target: Target) -> web.StreamResponse:
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        resp = await self.upstream.send("GET", target, headers)
        async with resp:
            body = await resp.read()
            if resp.status != 200:
                return relay_body(resp, body)
            tags = tag_set(body)
            if all(k != MANIFEST_TAG for k, _ in tags):
                return relay_body(resp, body)
            return relay_body(resp, tagging_body([(k, v) for k, v in tags if k != MANIFEST_TAG]))
