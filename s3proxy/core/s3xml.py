"""Rewrites of S3 XML bodies. Pure: bytes in, bytes out.

Request bodies the proxy must change (CompleteMultipartUpload carries the client's plaintext
checksums) and response bodies that report stored sizes (ListParts) go through here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from s3proxy.core.errors import MalformedXML

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_CHECKSUM_ELEMENTS = frozenset(
    {"ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME", "ChecksumSHA1", "ChecksumSHA256"}
)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse(body: bytes) -> ET.Element:
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise MalformedXML(
            "The XML you provided was not well-formed or did not validate against our "
            "published schema."
        ) from exc


def _serialize(root: ET.Element) -> bytes:
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    if namespace:
        ET.register_namespace("", namespace)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def strip_part_checksums(body: bytes) -> bytes:
    """A CompleteMultipartUpload body without the parts' checksums (they are the plaintext's;
    the stored parts are ciphertext the upstream has no checksum for)."""
    root = _parse(body)
    for part in root:
        if _local(part.tag) != "Part":
            continue
        for child in list(part):
            if _local(child.tag) in _CHECKSUM_ELEMENTS:
                part.remove(child)
    return _serialize(root)


def rewrite_part_sizes(body: bytes, plaintext_size: Callable[[int], int]) -> bytes:
    """A ListParts response with each part's ``Size`` mapped from stored to plaintext."""
    root = _parse(body)
    for part in root:
        if _local(part.tag) != "Part":
            continue
        for child in part:
            if _local(child.tag) == "Size" and child.text and child.text.strip().isdigit():
                child.text = str(plaintext_size(int(child.text)))
    return _serialize(root)


@dataclass(frozen=True)
class ListedObject:
    """One object (or object version) of a listing, as the listing reports it."""

    key: str
    version_id: str | None
    etag: str | None
    size: int


_LISTED = frozenset({"Contents", "Version"})


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return child.text or ""
    return None


def listed_objects(body: bytes) -> list[ListedObject]:
    """The objects of a ListObjects, ListObjectsV2 or ListObjectVersions response, in order.
    Keys are returned as they appear (URL-encoded if the client asked for encoding-type=url)."""
    root = _parse(body)
    out = []
    for entry in root:
        if _local(entry.tag) not in _LISTED:
            continue
        size = _child_text(entry, "Size")
        key = _child_text(entry, "Key")
        if key is None or size is None or not size.strip().isdigit():
            continue
        version = _child_text(entry, "VersionId")
        out.append(ListedObject(key, version, _child_text(entry, "ETag"), int(size)))
    return out


def rewrite_listed_sizes(body: bytes, sizes: list[int]) -> bytes:
    """The listing with the ``Size`` of its i-th listed object (as :func:`listed_objects`
    counts them) replaced by ``sizes[i]``."""
    root = _parse(body)
    index = 0
    for entry in root:
        if _local(entry.tag) not in _LISTED:
            continue
        size_element = next((c for c in entry if _local(c.tag) == "Size"), None)
        key = _child_text(entry, "Key")
        if size_element is None or key is None or not (size_element.text or "").strip().isdigit():
            continue
        size_element.text = str(sizes[index])
        index += 1
    if index != len(sizes):
        raise ValueError("sizes do not match the listing")
    return _serialize(root)
