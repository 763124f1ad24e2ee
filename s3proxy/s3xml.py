"""Rewrites of S3 XML bodies. Pure: bytes in, bytes out.

Request bodies the proxy must change (CompleteMultipartUpload carries the client's plaintext
checksums) and response bodies that report stored sizes (ListParts) go through here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

from s3proxy.errors import S3ProxyError

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_CHECKSUM_ELEMENTS = frozenset(
    {"ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME", "ChecksumSHA1", "ChecksumSHA256"}
)


class MalformedXML(S3ProxyError):
    status = 400
    code = "MalformedXML"


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
