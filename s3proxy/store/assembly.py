"""What CompleteMultipartUpload made upstream, checked against what the client asked for: the
stored object must be exactly the streams of the listed parts, in the listed order (its size the
sum of theirs, at each part's offset that part's stream header), and each part's stream must
hold the plaintext whose MD5 the client named. Only then is the manifest written, from the
client's list (docs/format.md, Multipart manifest; docs/threat-model.md)."""

from __future__ import annotations

import logging

from s3proxy.core.errors import IntegrityError, InvalidPart
from s3proxy.core.etags import object_etag
from s3proxy.core.format import Header, Trailer, parse_header
from s3proxy.core.layout import Layout, check_name_binding, check_object_shape
from s3proxy.core.manifest import needs_manifest
from s3proxy.core.objectinfo import ObjectInfo, check_marker, object_checksum
from s3proxy.core.partlist import ExpectedPart, expected_size
from s3proxy.core.request import Target
from s3proxy.store.objects import ObjectInspector, last_modified
from s3proxy.store.sharedfacts import identity

log = logging.getLogger("s3proxy")


def _not_the_parts(target: Target, why: str) -> IntegrityError:
    return IntegrityError(
        f"The upstream completed {target.resource} as an object that is not the parts listed "
        f"({why}); no manifest was written, so the object cannot be read."
    )


class AssemblyCheck:
    def __init__(self, objects: ObjectInspector) -> None:
        self.objects = objects

    async def verify(self, target: Target, parts: list[ExpectedPart]) -> ObjectInfo:
        """The completed object's info, once it is proven to be exactly ``parts``; its manifest
        is then written (if its streams ask for one) and its layout cached. Raises
        :class:`IntegrityError` when the upstream assembled something else, and
        :class:`InvalidPart` when a part's stream does not hold the plaintext whose MD5 the
        client named (a part this process did not seal: known only now)."""
        async with self.objects.first_bytes(target, []) as found:
            marker, stored_total, head = found.marker, found.stored_total, found.data
            if marker is None:
                status = found.resp.status
                raise _not_the_parts(target, f"HTTP {status} without the proxy's marker")
            stored_etag = found.resp.headers.get("ETag", "")
            modified = last_modified(found.resp)
        first = parse_header(head)
        check_marker(first, marker)
        if not marker.multipart:
            raise _not_the_parts(target, "its marker is not a multipart object's")
        total = expected_size(parts)
        if stored_total != total:
            raise _not_the_parts(
                target, f"{stored_total} stored bytes, where the {len(parts)} parts hold {total}"
            )
        sealed: dict[int, bytes] = {}
        headers = await self._headers(target, stored_etag, parts, first, sealed)
        layout = Layout.from_headers(headers)
        check_object_shape(layout, True)
        unbound_allowed = self.objects.names.unbound_allowed(target, modified)
        check_name_binding(layout, target.bucket or "", target.key or "", unbound_allowed)
        footers: dict[int, bytes] = {}
        trailers = await self._trailers(target, stored_etag, layout, parts, sealed, head, footers)
        layout = layout.with_footers(footers)
        etag = object_etag([t.md5 if t is not None else None for t in trailers], True)
        info = ObjectInfo(layout, trailers, etag, object_checksum(layout, trailers, marker))
        if needs_manifest(layout):  # from the client's list, now proven
            value = await self.objects.manifests.value_for(info)
            await self.objects.tags.write_manifest(target, value)
        self.objects.remember(target.without("versionId"), stored_etag, info)
        if target.has("versionId"):
            self.objects.remember(target, stored_etag, info)
        stored = identity(target, stored_etag, stored_total)  # shared with the other proxies
        await self.objects.shared.publish(stored, info.summary)
        return info

    async def _headers(
        self,
        target: Target,
        stored_etag: str,
        parts: list[ExpectedPart],
        first: Header,
        sealed: dict[int, bytes],
    ) -> list[Header]:
        """The stream header at each part's offset (one ranged read per part boundary, with
        the trailer before it), which must be the part's own: the one this process sealed, or
        one of the part's listed stored size."""
        later = [p.offset for p in parts[1:]]
        found = (
            await self.objects.reads.boundaries(target, stored_etag, later, sealed) if later else {}
        )
        found[0] = first
        headers = []
        for part in parts:
            header = found.get(part.offset)
            if header is None or header.stored_length != part.stored_size:
                raise _not_the_parts(target, f"no stream of part {part.number}'s size there")
            if part.header is not None and header != part.header:
                raise _not_the_parts(target, f"another stream where part {part.number} belongs")
            headers.append(header)
        return headers

    async def _trailers(
        self,
        target: Target,
        stored_etag: str,
        layout: Layout,
        parts: list[ExpectedPart],
        sealed: dict[int, bytes],
        head: bytes,
        footers: dict[int, bytes],
    ) -> tuple[Trailer | None, ...]:
        """Every stream's trailer: the ones this process sealed as they are, the others read
        and opened; each must hold the MD5 the client named for its part. The v3 footers
        (sealed here, or read and opened) are left in ``footers`` by stream index."""
        given = {i: p.trailer for i, p in enumerate(parts) if p.trailer is not None}
        footers.update({i: p.footer for i, p in enumerate(parts) if p.footer is not None})
        keys: dict[str, bytes] = {}
        trailers = await self.objects.trailers(
            target, stored_etag, layout, keys, sealed, head, given, footers
        )
        for part, trailer in zip(parts, trailers, strict=True):
            if part.claim is not None and (trailer is None or trailer.md5 != part.claim):
                log.warning(
                    "%s: part %d was completed with an ETag its stored stream does not have; "
                    "the upstream completed the object, no manifest was written",
                    target.resource,
                    part.number,
                )
                raise InvalidPart(part.number)
        return trailers
