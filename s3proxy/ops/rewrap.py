"""Re-wrapping one stored object's data keys with the latest transit key version, as ``s3proxy
rewrap`` does for each object it walks (s3proxy.ops.walk). Only the stream headers change: the
stored segments are copied through unchanged. See docs/keys.md."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from s3proxy.core.errors import IntegrityError, S3ProxyError
from s3proxy.core.footer import seal_footer
from s3proxy.core.format import Trailer, parse_header
from s3proxy.core.layout import Layout, StreamInfo
from s3proxy.core.manifest import MANIFEST_TAG
from s3proxy.core.objectinfo import check_marker
from s3proxy.core.request import Target
from s3proxy.core.s3xml import completion_body, root_text, upload_id
from s3proxy.core.sizes import HEADER_SIZE
from s3proxy.core.wholeobject import is_whole_record, seal_whole
from s3proxy.keys.transit import KeyService, VaultTransit
from s3proxy.store.objects import ObjectInspector
from s3proxy.store.sharedfacts import SharedFacts, identity
from s3proxy.upstream.client import Upstream
from s3proxy.upstream.uploads import Uploads

if TYPE_CHECKING:  # (redis is imported only where a shared cache is configured)
    from s3proxy.store.sharedcache import SharedCache

CHUNK = 1024 * 1024
_VERSION = re.compile(r"^vault:v(\d+):")
StreamBody = Callable[[StreamInfo], AsyncIterator[bytes]]  # a stream's body as it is to be stored

# Headers of a stored object that a rewritten copy must carry again.
_KEPT = (
    "Content-Type",
    "Content-Encoding",
    "Content-Disposition",
    "Content-Language",
    "Cache-Control",
    "Expires",
    "x-amz-storage-class",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-website-redirect-location",
)


def key_version(wrapped: str) -> int:
    found = _VERSION.match(wrapped)
    if found is None:
        raise IntegrityError("A stored wrapped data key is not a Vault transit ciphertext.")
    return int(found.group(1))


class Rewrapper:
    """Rewraps objects one at a time; any number may run at once."""

    def __init__(
        self,
        vault: VaultTransit,
        upstream: Upstream,
        checksum: str = "auto",
        keys: KeyService | None = None,
        shared_cache: SharedCache | None = None,
    ) -> None:
        """``keys``: the key service reads and footers use (default ``vault`` itself; the
        command passes a caching one, so a metadata key is asked once per version);
        ``shared_cache``: where rewritten objects are written through (docs/metadata.md)."""
        self.vault = vault
        self.keys = keys or vault
        self.upstream = upstream
        self.uploads = Uploads(upstream, checksum)  # the writes carry the proxy's checksum
        shared = SharedFacts(shared_cache, self.keys)
        self.objects = ObjectInspector(self.keys, upstream, shared=shared)

    async def one(self, target: Target, latest: int, dry_run: bool = False) -> str:
        """'rewritten' (or 'to rewrap' in a dry run), 'current', or 'skipped' (not written by
        the proxy)."""
        async with self.objects.first_bytes(target, []) as found:
            if found.marker is None:
                return "skipped"  # not written by the proxy, or gone
            stored = found.resp.headers  # a GET's answer carries what a HEAD's would
            kept = [(h, stored[h]) for h in _KEPT if h in stored]
            kept += [(h, v) for h, v in stored.items() if h.lower().startswith("x-amz-meta-")]
            etag = stored.get("ETag", "")
            tagged = stored.get("x-amz-tagging-count", "0") != "0"
            marker = found.marker
            if not marker.multipart:  # one stream, whose header was just read
                first = parse_header(found.data[:HEADER_SIZE])
                check_marker(first, marker)
                if key_version(first.wrapped_key) >= latest:
                    return "current"
                if dry_run:
                    return "to rewrap"
            info = await self.objects.info_of(target, found)
            layout = info.layout
        if all(key_version(s.header.wrapped_key) >= latest for s in layout.streams):
            return "current"
        if dry_run:
            return "to rewrap"
        rewrapped: dict[str, str] = {}
        for s in layout.streams:
            wrapped = s.header.wrapped_key
            if wrapped not in rewrapped:
                rewrapped[wrapped] = await self.vault.rewrap(wrapped)
        tagging = await self._tagging(target) if tagged else ""  # S3 counts tags in HEAD
        if tagging:
            kept.append(("x-amz-tagging", tagging))

        def rewrapped_body(stream: StreamInfo) -> AsyncIterator[bytes]:
            trailer = info.trailers[layout.streams.index(stream)]
            return self._rewrapped_stream(target, etag, stream, rewrapped, trailer)

        if marker.multipart:
            stored_etag = await self._rewrite_multipart(target, layout, kept, rewrapped_body)
        else:
            stored_etag = await self._rewrite_single(target, layout, kept, rewrapped_body)
        if stored_etag:  # the same plaintext, in a new stored object
            rewritten = identity(target, stored_etag, layout.stored_length)
            await self.objects.shared.publish(rewritten, info.summary)
        return "rewritten"

    async def _tagging(self, target: Target) -> str:
        """The object's tags as an ``x-amz-tagging`` value (the proxy's manifest tag too)."""
        tags = await self.objects.tags.read(target)
        if tags is None:  # rewriting now would drop them
            raise S3ProxyError("the object's tags could not be read; it was left as it is")
        tags = [(k, await self._resealed(v) if k == MANIFEST_TAG else v) for k, v in tags]
        return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in tags)

    async def _resealed(self, manifest: str) -> str:
        """A v3 manifest sealed again under the latest metadata key, as the footers are (the
        streams keep their salts and sizes, so its facts stay true); a v2 manifest as it is."""
        if not is_whole_record(manifest):
            return manifest
        facts = await self.objects.manifests.open(manifest)
        return seal_whole(await self.keys.metadata_key(), facts)

    async def _stream_bytes(
        self, target: Target, etag: str, first: int, last: int
    ) -> AsyncIterator[bytes]:
        resp = await self.upstream.send(
            "GET", target, [("If-Match", etag), ("Range", f"bytes={first}-{last}")]
        )
        async with resp:
            if resp.status != 206:
                raise S3ProxyError(f"reading the stored object failed with HTTP {resp.status}")
            async for chunk in resp.content.iter_chunked(CHUNK):
                yield chunk

    async def _rewrapped_stream(
        self,
        target: Target,
        etag: str,
        stream: StreamInfo,
        rewrapped: dict[str, str],
        trailer: Trailer | None,
    ) -> AsyncIterator[bytes]:
        """One stream as stored, with only its wrapped key replaced: the new header, then the
        stored segments copied through unchanged; a v3 stream's footer sealed again under the
        latest metadata key (the old one's version is on its way out with the data key's)."""
        old = stream.header
        new = dataclasses.replace(old, wrapped_key=rewrapped[old.wrapped_key])
        yield new.encode()
        first = stream.stored_offset + HEADER_SIZE
        last = stream.stored_offset + stream.stored_length - 1
        if old.has_footer:
            last -= old.end_size
        async for chunk in self._stream_bytes(target, etag, first, last):
            yield chunk
        if old.has_footer:
            assert trailer is not None  # (a v3 stream's info holds its footer's record)
            yield seal_footer(await self.keys.metadata_key(), new, trailer)

    async def _rewrite_single(
        self, target: Target, layout: Layout, kept: list[tuple[str, str]], stream_body: StreamBody
    ) -> str | None:
        """The object written again; its new stored ETag."""
        body = stream_body(layout.streams[0])
        resp = await self.uploads.put_stream(target, kept, layout.stored_length, body)
        async with resp:
            if resp.status != 200:
                raise S3ProxyError(f"rewriting failed with HTTP {resp.status}: {await resp.text()}")
            return resp.headers.get("ETag")

    async def _rewrite_multipart(
        self, target: Target, layout: Layout, kept: list[tuple[str, str]], stream_body: StreamBody
    ) -> str | None:
        """The object written again as a multipart upload; its new stored ETag."""
        create = await self.upstream.send(
            "POST", Target(target.bucket, target.key, (("uploads", None),)), kept, b""
        )
        async with create:
            created = await create.read()
            if create.status != 200:
                raise S3ProxyError(f"starting the rewrite failed with HTTP {create.status}")
        uid = upload_id(created)
        if uid is None:
            raise S3ProxyError("the upstream returned no upload ID")
        parts = []
        try:
            for number, stream in enumerate(layout.streams, start=1):
                part = Target(
                    target.bucket, target.key, (("partNumber", str(number)), ("uploadId", uid))
                )
                body = stream_body(stream)
                resp = await self.uploads.put_stream(part, [], stream.stored_length, body)
                async with resp:
                    if resp.status != 200:
                        raise S3ProxyError(
                            f"rewriting part {number} failed with HTTP {resp.status}"
                        )
                    parts.append((number, resp.headers["ETag"]))
            complete = await self.upstream.send(
                "POST",
                Target(target.bucket, target.key, (("uploadId", uid),)),
                [("Content-Type", "application/xml")],
                completion_body(parts),
            )
            async with complete:
                body_text = await complete.text()
                if complete.status != 200 or "<Error>" in body_text:
                    raise S3ProxyError(f"completing the rewrite failed: HTTP {complete.status}")
                return root_text(body_text.encode(), "ETag")
        except BaseException:
            abort = await self.upstream.send(
                "DELETE", Target(target.bucket, target.key, (("uploadId", uid),)), []
            )
            abort.release()
            raise
