"""GetObjectAttributes for encrypted objects: the plaintext's ETag, size, checksum and part
sizes in place of the stored object's (which describe ciphertext)."""

from __future__ import annotations

from aiohttp import web

from s3proxy.config import Config
from s3proxy.core.errors import InvalidArgument
from s3proxy.core.headers import upstream_request_headers
from s3proxy.core.marker import Marker
from s3proxy.core.numbers import parse_decimal
from s3proxy.core.objectinfo import ObjectInfo
from s3proxy.core.request import Target
from s3proxy.core.s3xml import PlaintextAttributes, rewrite_object_attributes
from s3proxy.server.readrules import check_unencrypted
from s3proxy.server.relay import relay_body
from s3proxy.store.objects import ObjectInspector
from s3proxy.upstream.client import Upstream


def _number(request: web.Request, name: str, default: int) -> int:
    text = request.headers.get(name)
    if text is None:
        return default
    number = parse_decimal(text.strip())
    if number is None:
        raise InvalidArgument(f"Invalid value for {name}.")
    return number


def plaintext_attributes(info: ObjectInfo, marker: Marker | None) -> PlaintextAttributes:
    kept = None
    if info.checksum is not None:
        kept = (info.checksum.algorithm, info.checksum.value, info.checksum.type)
    elif marker is not None and marker.checksum and ":" in marker.checksum:  # v1 metadata
        algorithm, _, value = marker.checksum.partition(":")
        kept = (algorithm, value, "FULL_OBJECT")
    multipart = marker is not None and marker.multipart
    return PlaintextAttributes(
        etag=info.etag.strip('"') if info.etag else None,
        size=info.size,
        checksum=kept,
        part_sizes=[s.plaintext_length for s in info.layout.streams] if multipart else None,
    )


class Attributes:
    def __init__(self, config: Config, upstream: Upstream, objects: ObjectInspector) -> None:
        self.config = config
        self.upstream = upstream
        self.objects = objects

    async def get_object_attributes(
        self, request: web.Request, target: Target
    ) -> web.StreamResponse:
        headers = upstream_request_headers(request.headers.items(), encrypting=False)
        upstream_resp = await self.upstream.send("GET", target, headers)
        async with upstream_resp:
            body = await upstream_resp.read()
            if upstream_resp.status != 200:
                return relay_body(upstream_resp, body)
        version = target.param("versionId")
        whole = Target(target.bucket, target.key, (("versionId", version),) if version else ())
        async with self.objects.probing(whole, []) as probe:
            if probe.info is None:
                check_unencrypted(self.config, whole, probe.resp)
                return relay_body(upstream_resp, body)
            info, marker = probe.info, Marker.of(probe.resp.headers)
        requested = {
            name.strip()
            for name in request.headers.get("x-amz-object-attributes", "").split(",")
            if name.strip()
        }
        rewritten = rewrite_object_attributes(
            body,
            plaintext_attributes(info, marker),
            requested,
            max_parts=_number(request, "x-amz-max-parts", 1000),
            part_number_marker=_number(request, "x-amz-part-number-marker", 0),
        )
        return relay_body(upstream_resp, rewritten)
