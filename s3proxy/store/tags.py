"""Object tags, where the proxy keeps the manifest of a multipart object (core/manifest.py):
written at CompleteMultipartUpload, read with the object's layout, and hidden from clients,
whose GetObjectTagging, PutObjectTagging and DeleteObjectTagging see and change only their own
tags."""

from __future__ import annotations

import base64
import hashlib

from s3proxy.core.errors import InternalError, MalformedXML
from s3proxy.core.manifest import MANIFEST_TAG
from s3proxy.core.request import Target
from s3proxy.core.s3xml import tag_set, tagging_body
from s3proxy.upstream.client import Upstream


def content_md5(body: bytes) -> str:
    """(Object Lock buckets want a Content-MD5 with every PUT, tagging included.)"""
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def tagging_target(target: Target) -> Target:
    version = target.param("versionId")
    query = (("tagging", None), *((("versionId", version),) if version else ()))
    return Target(target.bucket, target.key, query)


class Tags:
    """An object's tags in the store, and the proxy's manifest tag among them."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def read(self, target: Target) -> list[tuple[str, str]] | None:
        """The object's tags as stored (``None`` if the upstream has none to give)."""
        resp = await self.upstream.send("GET", tagging_target(target), [])
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
        headers = [("Content-Type", "application/xml"), ("Content-MD5", content_md5(body))]
        resp = await self.upstream.send("PUT", tagging_target(target), headers, body)
        async with resp:
            if resp.status != 200:
                text = (await resp.read())[:300].decode(errors="replace")
                raise InternalError(
                    "The object was completed, but its manifest could not be written as an "
                    f"object tag (HTTP {resp.status}: {text}); the proxy needs "
                    "s3:PutObjectTagging and s3:GetObjectTagging, or "
                    "S3PROXY_MULTIPART_MANIFEST=off."
                )
