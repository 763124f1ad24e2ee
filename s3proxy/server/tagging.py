"""Object tags, where the proxy keeps the manifest of a multipart object (core/manifest.py):
written at CompleteMultipartUpload, read with the object's layout, and hidden from clients,
whose GetObjectTagging, PutObjectTagging and DeleteObjectTagging see and change only their own
tags."""

from __future__ import annotations

import base64
import hashlib

from aiohttp import web

from s3proxy.core.errors import InternalError, MalformedXML
from s3proxy.core.headers import upstream_request_headers
from s3proxy.core.manifest import MANIFEST_TAG
from s3proxy.core.request import Target
from s3proxy.core.s3xml import tag_set, tagging_body
from s3proxy.server.clientauth import read_checked
from s3proxy.server.relay import relay, relay_body
from s3proxy.upstream.client import Upstream

TAGGING_BODY_LIMIT = 64 * 1024


def _content_md5(body: bytes) -> str:
    """(Object Lock buckets want a Content-MD5 with every PUT, tagging included.)"""
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def _tagging(target: Target) -> Target:
    version = target.param("versionId")
    query = (("tagging", None), *((("versionId", version),) if version else ()))
    return Target(target.bucket, target.key, query)


class Tags:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def read(self, target: Target) -> list[tuple[str, str]] | None:
        """The object's tags as stored (``None`` if the upstream has none to give)."""
        resp = await self.upstream.send("GET", _tagging(target), [])
        async with resp:
            if resp.status != 200:
                return None
            body = await resp.read()
        try:
            return tag_set(body)
        except MalformedXML:
            return None

    async def manifest(self, target: Target) -> str | None:
        for key, value in await self.read(target) or []:
            if key == MANIFEST_TAG:
                return value
        return None

    async def write_manifest(self, target: Target, value: str) -> None:
        """Add (or replace) the manifest tag, keeping the object's other tags."""
        tags = [(k, v) for k, v in await self.read(target) or [] if k != MANIFEST_TAG]
        body = tagging_body([*tags, (MANIFEST_TAG, value)])
        headers = [("Content-Type", "application/xml"), ("Content-MD5", _content_md5(body))]
        resp = await self.upstream.send("PUT", _tagging(target), headers, body)
        async with resp:
            if resp.status != 200:
                text = (await resp.read())[:300].decode(errors="replace")
                raise InternalError(
                    "The object was completed, but its manifest could not be written as an "
                    f"object tag (HTTP {resp.status}: {text}); the proxy needs "
                    "s3:PutObjectTagging and s3:GetObjectTagging, or "
                    "S3PROXY_MULTIPART_MANIFEST=off."
                )

    # ---- the client's own tagging requests ---------------------------------------------------

    async def handle(self, request: web.Request, target: Target) -> web.StreamResponse:
        if request.method == "GET":
            return await self._get(request, target)
        body = await read_checked(
            request, TAGGING_BODY_LIMIT, MalformedXML("The tagging document is too large.")
        )
        manifest = await self.manifest(target)
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        if manifest is None:  # nothing of the proxy's to keep
            resp = await self.upstream.send(request.method, target, headers, body or None)
            async with resp:
                return await relay(request, resp)
        tags = [] if request.method == "DELETE" else tag_set(body)
        tags = [(k, v) for k, v in tags if k != MANIFEST_TAG]
        new_body = tagging_body([*tags, (MANIFEST_TAG, manifest)])
        headers = [(k, v) for k, v in headers if k.lower() not in ("content-md5", "content-type")]
        headers += [("Content-Type", "application/xml"), ("Content-MD5", _content_md5(new_body))]
        resp = await self.upstream.send("PUT", _tagging(target), headers, new_body)
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
