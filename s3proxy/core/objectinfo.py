"""The object model: an encrypted object as the client sees it (its layout, its streams'
trailers, its plaintext ETag and checksum), worked out from what is stored."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from s3proxy.core.errors import IntegrityError
from s3proxy.core.format import Header, Trailer
from s3proxy.core.layout import Layout
from s3proxy.core.manifest import needs_manifest
from s3proxy.core.marker import Marker
from s3proxy.core.objectsums import FULL_OBJECT, multipart_checksum


@dataclass(frozen=True)
class ObjectChecksum:
    """The plaintext checksum S3 would report for the whole object."""

    algorithm: str
    value: str  # base64, with -N for a COMPOSITE multipart checksum
    type: str  # FULL_OBJECT or COMPOSITE

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [
            (f"x-amz-checksum-{self.algorithm}", self.value),
            ("x-amz-checksum-type", self.type),
        ]


@dataclass(frozen=True)
class ObjectSummary:
    """What a HEAD or a listing answers of an object, without its layout (what the shared
    metadata cache holds, docs/metadata.md): enough for a HEAD, not for a body or a part."""

    size: int
    etag: str | None  # the plaintext ETag; None: a v1 object keeps its stored ETag
    checksum: ObjectChecksum | None = None
    hidden_tags: int = 0  # how many of the object's tags are the proxy's (its manifest)


@dataclass(frozen=True)
class ObjectInfo:
    """An encrypted object as the client sees it."""

    layout: Layout
    trailers: tuple[Trailer | None, ...]  # per stream; None for v1 streams
    etag: str | None  # the plaintext ETag; None: a v1 object keeps its stored ETag
    checksum: ObjectChecksum | None = None

    @property
    def size(self) -> int:
        return self.layout.plaintext_length

    @property
    def hidden_tags(self) -> int:
        """How many of the object's tags are the proxy's (its manifest)."""
        return 1 if needs_manifest(self.layout) else 0

    @property
    def summary(self) -> ObjectSummary:
        return ObjectSummary(self.size, self.etag, self.checksum, self.hidden_tags)

    def part_checksum(self, index: int) -> tuple[str, str] | None:
        """(algorithm, base64) of the checksum the client sent with one part, if any."""
        trailer = self.trailers[index]
        if trailer is None or trailer.checksum_algorithm is None:
            return None
        return trailer.checksum_algorithm, base64.b64encode(trailer.checksum).decode()


def object_checksum(
    layout: Layout, trailers: tuple[Trailer | None, ...], marker: Marker
) -> ObjectChecksum | None:
    """Single stream: the checksum the client sent with it. Multipart: the composite or
    full-object checksum of the algorithm and type chosen at CreateMultipartUpload, when every
    part was sent with a checksum of that algorithm."""
    if not marker.multipart:
        trailer = trailers[0] if len(trailers) == 1 else None
        if trailer is None or trailer.checksum_algorithm is None:
            return None
        value = base64.b64encode(trailer.checksum).decode()
        return ObjectChecksum(trailer.checksum_algorithm, value, FULL_OBJECT)
    algorithm, kind = marker.checksum_algorithm, marker.checksum_type
    if not algorithm or not kind:
        return None
    parts = []
    for stream, trailer in zip(layout.streams, trailers, strict=True):
        if trailer is None or trailer.checksum_algorithm != algorithm:
            return None
        parts.append((trailer.checksum, stream.plaintext_length))
    combined = multipart_checksum(algorithm, kind, parts)
    return None if combined is None else ObjectChecksum(algorithm, combined, kind)


def check_marker(first: Header, marker: Marker) -> None:
    """The first header's version and segment size are the marker's; a multipart object's
    parts may be v2 or v3 under a v2 or v3 marker (proxies of both releases share uploads)."""
    versions = first.version == marker.version or (
        marker.multipart and min(first.version, marker.version) >= 2
    )
    if not versions or first.segment_size != marker.segment_size:
        raise IntegrityError("The stored object's header does not match its metadata.")
