"""A multipart object's manifest tag, of either kind: v2's HMAC under the first stream's data key
(core/manifest.py), or v3's record of the whole object sealed under a metadata key
(core/wholeobject.py), written when every stream is v3. Made at CompleteMultipartUpload and for a
copy, checked by every read that builds a layout (docs/format.md, Multipart manifest)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from s3proxy.core.footer import MetadataKey
from s3proxy.core.layout import Layout
from s3proxy.core.manifest import check_manifest, manifest_value
from s3proxy.core.objectinfo import ObjectInfo
from s3proxy.core.request import Target
from s3proxy.core.wholeobject import (
    WholeObject,
    check_layout,
    is_whole_record,
    open_whole,
    seal_whole,
    whole_key_version,
    whole_object_of,
)
from s3proxy.keys.transit import KeyService, wrapped_version
from s3proxy.store.tags import Tags

Unwrap = Callable[[str, dict[str, bytes] | None], Awaitable[bytes]]


class Manifests:
    """Manifest tags on the keys and tags of an :class:`~s3proxy.store.objects.ObjectInspector`
    (``unwrap``: its data-key look-up, remembered per request)."""

    def __init__(self, keys: KeyService, tags: Tags, unwrap: Unwrap) -> None:
        self.keys = keys
        self.tags = tags
        self.unwrap = unwrap

    async def check(
        self, target: Target, layout: Layout, keys: dict[str, bytes] | None
    ) -> WholeObject | None:
        """Read the object's manifest tag; raise unless it records exactly ``layout``'s
        streams. A v3 record's facts are returned (the caller checks its ETag against them)."""
        value = await self.tags.manifest(target)
        if value is not None and is_whole_record(value):
            facts = await self.open(value)
            check_layout(facts, layout)
            return facts
        first = layout.streams[0].header
        check_manifest(await self.unwrap(first.wrapped_key, keys), layout, value)
        return None

    async def open(self, value: str) -> WholeObject:
        """A v3 record, opened with the metadata key it names (one Vault call per version)."""
        metadata_key = await self.keys.metadata_key(whole_key_version(value))
        return open_whole(metadata_key, value)

    async def value_for(self, info: ObjectInfo) -> str:
        """The manifest tag value of the object ``info`` describes (its streams proven): a v3
        record when every stream is v3 (a HEAD then needs no more than the record and the
        last footer), else v2's."""
        streams = info.layout.streams
        if all(s.header.has_footer for s in streams):
            newest = max(wrapped_version(s.header.wrapped_key) for s in streams)
            return seal_whole(await self._metadata_key(newest), whole_object_of(info))
        first_key = await self.unwrap(streams[0].header.wrapped_key, None)
        return manifest_value(first_key, info.layout)

    async def _metadata_key(self, at_least: int) -> MetadataKey:
        """The latest metadata key, of a version no older than the streams' data keys' (as
        a footer's: server/writes.py)."""
        found = await self.keys.metadata_key()
        return found if found.version >= at_least else await self.keys.metadata_key(at_least)
