"""Rewrites of S3 XML bodies. Pure: bytes in, bytes out.

Request bodies the proxy must change (CompleteMultipartUpload carries the client's plaintext
checksums) and response bodies that report stored sizes (ListParts) go through here.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

from s3proxy.core.errors import MalformedXML
from s3proxy.core.errors import xml_text as escape
from s3proxy.core.numbers import parse_decimal

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_CHECKSUM_ELEMENTS = frozenset(
    {"ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME", "ChecksumSHA1", "ChecksumSHA256"}
)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse(body: bytes) -> ET.Element:
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:  # S3 XML never has them; entity expansion
        raise MalformedXML("The XML you provided declares a document type or entities.")
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
    # ElementTree writes a carriage return in text as is, which every parser reads back as a
    # line feed: a key holding one would change. It only ever comes from text, so escape it.
    return data.replace(b"\r", b"&#13;")


def rewrite_part_sizes(body: bytes, plaintext_size: Callable[[int], int]) -> bytes:
    """A ListParts response with each part's ``Size`` mapped from stored to plaintext."""
    root = _parse(body)
    for part in root:
        if _local(part.tag) != "Part":
            continue
        for child in part:
            size = parse_decimal((child.text or "").strip())
            if _local(child.tag) == "Size" and size is not None:
                child.text = str(plaintext_size(size))
    return _serialize(root)


@dataclass(frozen=True)
class ListedObject:
    """One object (or object version) of a listing, as the listing reports it."""

    key: str
    version_id: str | None
    etag: str | None
    size: int


_LISTED = frozenset({"Contents", "Version"})


def _size(element: ET.Element) -> int | None:
    return parse_decimal((element.text or "").strip())


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return child.text or ""
    return None


_ENTRY_FIELDS = frozenset({"Key", "Size", "VersionId", "ETag"})


def listed_objects(body: bytes) -> list[ListedObject]:
    """The objects of a ListObjects, ListObjectsV2 or ListObjectVersions response, in order.
    Keys are returned as they appear (URL-encoded if the client asked for encoding-type=url).
    Of an element that appears twice in an entry, the first counts."""
    root = _parse(body)
    out = []
    local = _Locals()
    for entry in root:
        if local(entry.tag) not in _LISTED:
            continue
        fields: dict[str, str] = {}
        for child in entry:
            name = local(child.tag)
            if name in _ENTRY_FIELDS and name not in fields:
                fields[name] = child.text or ""
        key = fields.get("Key")
        number = parse_decimal(fields.get("Size", "").strip())
        if key is None or number is None:
            continue
        out.append(ListedObject(key, fields.get("VersionId"), fields.get("ETag"), number))
    return out


class _Locals:
    """Local names of the tags of one document, each worked out once (a page of a thousand
    entries has a handful of distinct tags; at most :attr:`LIMIT` are remembered)."""

    LIMIT = 64

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, tag: str) -> str:
        found = self._seen.get(tag)
        if found is None:
            found = _local(tag)
            if len(self._seen) < self.LIMIT:
                self._seen[tag] = found
        return found


def rewrite_listing(
    body: bytes, found: list[tuple[int, str | None]], listed: list[ListedObject] | None = None
) -> bytes:
    """The listing with the ``Size`` and ``ETag`` of its i-th listed object (as
    :func:`listed_objects` counts them) replaced by ``found[i]`` (an ETag of ``None`` is kept).
    With ``listed`` (what :func:`listed_objects` read of ``body``), the values are spliced into
    the bytes where every entry is as S3 writes it, which costs a tenth of parsing and writing
    the document again (docs/metadata.md, Listings); otherwise, or on any doubt, it is."""
    if listed is not None:
        spliced = _spliced_listing(body, found, listed)
        if spliced is not None:
            return spliced
    root = _parse(body)
    index = 0
    for entry in root:
        if _local(entry.tag) not in _LISTED:
            continue
        size_element = next((c for c in entry if _local(c.tag) == "Size"), None)
        key = _child_text(entry, "Key")
        if size_element is None or key is None or _size(size_element) is None:
            continue
        size, etag = found[index]
        size_element.text = str(size)
        etag_element = next((c for c in entry if _local(c.tag) == "ETag"), None)
        if etag is not None and etag_element is not None:
            etag_element.text = etag
        index += 1
    if index != len(found):
        raise ValueError("sizes do not match the listing")
    return _serialize(root)


_SIZE_BYTES = re.compile(rb"<Size>([^<]*)</Size>")
_ETAG_BYTES = re.compile(rb"<ETag>([^<]*)</ETag>")
_KEY_BYTES = re.compile(rb"<Key[ />]")
_UNUSUAL = (b"<![CDATA[", b"<!--", b"<!DOCTYPE", b"<!ENTITY")


def _entry_spans(body: bytes) -> Iterator[tuple[int, int]]:
    """Where the content of each ``<Contents>`` entry is (of each ``<Version>`` in a listing
    without any): from its opening tag to the first closing tag after it. A document that mixes
    both shows fewer entries here than the parser lists, and is not spliced."""
    tag = b"Contents" if b"<Contents>" in body else b"Version"
    opening, closing = b"<" + tag + b">", b"</" + tag + b">"
    found = body.find(opening)
    while found >= 0:
        start = found + len(opening)
        end = body.find(closing, start)
        if end < 0:
            return
        yield start, end
        found = body.find(opening, end + len(closing))


def _spliced_listing(
    body: bytes, found: list[tuple[int, str | None]], listed: list[ListedObject]
) -> bytes | None:
    """:func:`rewrite_listing` by splicing; None where the document is not plainly as S3 writes
    it: markup that could hide tags, or entries that do not line up one by one (same order,
    stored size and stored ETag) with those the parser listed."""
    if len(found) != len(listed) or any(mark in body for mark in _UNUSUAL):
        return None
    if body.count(b"<?") > 1:  # (the XML declaration only)
        return None
    out: list[bytes] = []
    position = index = 0
    for start, end in _entry_spans(body):
        inner = body[start:end]
        size = _SIZE_BYTES.search(inner)
        if size is None or _KEY_BYTES.search(inner) is None:
            continue  # (the parser skips it too, or the counts below differ)
        etag = _ETAG_BYTES.search(inner)
        if index == len(listed) or not _same_entry(size, etag, listed[index]):
            return None
        new_size, new_etag = found[index]
        index += 1
        pieces = [body[position:start]]
        if etag is not None and new_etag is not None:
            value = escape(new_etag).encode()
            first, second = (size, etag) if size.start() < etag.start() else (etag, size)
            pieces += [inner[: first.start()], _element(first, size, new_size, value)]
            pieces += [inner[first.end() : second.start()], _element(second, size, new_size, value)]
            pieces.append(inner[second.end() :])
        else:
            pieces += [inner[: size.start()], b"<Size>%d</Size>" % new_size, inner[size.end() :]]
        out += pieces
        position = end
    if index != len(listed):
        return None
    out.append(body[position:])
    return b"".join(out)


def _element(match: re.Match[bytes], size: re.Match[bytes], new_size: int, etag: bytes) -> bytes:
    """The new bytes of the matched ``Size`` or ``ETag`` element."""
    return b"<Size>%d</Size>" % new_size if match is size else b"<ETag>" + etag + b"</ETag>"


def _same_entry(size: re.Match[bytes], etag: re.Match[bytes] | None, listed: ListedObject) -> bool:
    """Whether this entry's bytes show the stored size and ETag the parser read for it."""
    if parse_decimal(size.group(1).strip()) != listed.size:
        return False
    shown = None if etag is None else _unescape(etag.group(1))
    return shown == listed.etag


def _unescape(text: bytes) -> str | None:
    """The text these bytes of an element's content spell (an ETag's: its quotes escaped)."""
    plain = text.replace(b"&quot;", b'"')
    if b"&" not in plain and b"\r" not in plain:
        return plain.decode("utf-8", "surrogateescape")
    try:
        return ET.fromstring(b"<e>" + text + b"</e>").text or ""
    except ET.ParseError:
        return None


_MALFORMED = (
    "The XML you provided was not well-formed or did not validate against our published schema."
)
MAX_COMPLETION_PARTS = 10_000


class CompletionParser:
    """Parses a CompleteMultipartUpload request body as it arrives: :meth:`feed` it pieces,
    :meth:`close` returns the (PartNumber, ETag) pairs in order. Keeps one ``Part`` element at a
    time, so memory stays near the size of the result whatever the body holds, and each
    :meth:`feed` costs time in proportion to its piece (the caller yields between pieces)."""

    def __init__(self) -> None:
        self._parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
        self._depth = 0
        self._head = b""  # the first bytes, to refuse document type declarations
        self.parts: list[tuple[int, str]] = []

    def feed(self, data: bytes) -> None:
        if len(self._head) < 4096:
            self._head += data[:4096]
        if b"<!DOCTYPE" in self._head or b"<!ENTITY" in data or b"<!DOCTYPE" in data:
            raise MalformedXML(_MALFORMED)
        try:
            self._parser.feed(data)
            self._collect()  # (a parse error surfaces here, from read_events)
        except ET.ParseError as exc:
            raise MalformedXML(_MALFORMED) from exc

    def _collect(self) -> None:
        events = cast(Iterator[tuple[str, object]], self._parser.read_events())
        for event, found in events:
            if not isinstance(found, ET.Element):
                continue
            if event == "start":
                self._depth += 1
                continue
            self._depth -= 1
            if self._depth == 1 and _local(found.tag) == "Part":
                number = _child_text(found, "PartNumber")
                etag = _child_text(found, "ETag")
                value = parse_decimal((number or "").strip())
                if value is None or etag is None:
                    raise MalformedXML(_MALFORMED)
                self.parts.append((value, etag.strip()))
                if len(self.parts) > MAX_COMPLETION_PARTS:
                    raise MalformedXML("The upload cannot have more than 10000 parts.")
            if self._depth == 1:
                found.clear()

    def close(self) -> list[tuple[int, str]]:
        try:
            self._parser.close()
            self._collect()
        except ET.ParseError as exc:
            raise MalformedXML(_MALFORMED) from exc
        return self.parts


def completion_parts(body: bytes) -> list[tuple[int, str]]:
    """The (PartNumber, ETag) pairs of a whole CompleteMultipartUpload request body."""
    parser = CompletionParser()
    for start in range(0, len(body), 65536):
        parser.feed(body[start : start + 65536])
    return parser.close()


def completion_body(parts: list[tuple[int, str]]) -> bytes:
    """A CompleteMultipartUpload body listing these parts (the parts' plaintext checksums, which
    the stored ciphertext parts have no use for, are left out)."""
    items = "".join(
        f"<Part><PartNumber>{number}</PartNumber><ETag>{escape(etag)}</ETag></Part>"
        for number, etag in parts
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<CompleteMultipartUpload xmlns="{S3_NS}">{items}</CompleteMultipartUpload>'
    ).encode()


@dataclass(frozen=True)
class PartsPage:
    parts: list[tuple[int, str, int]]  # PartNumber, ETag, Size
    next_marker: str | None  # NextPartNumberMarker when the listing is truncated


def listed_parts(body: bytes) -> PartsPage:
    """The parts of a ListParts response page."""
    root = _parse(body)
    parts = []
    for part in root:
        if _local(part.tag) != "Part":
            continue
        number = parse_decimal((_child_text(part, "PartNumber") or "").strip())
        size = parse_decimal((_child_text(part, "Size") or "").strip())
        if number is not None and size is not None:
            parts.append((number, (_child_text(part, "ETag") or "").strip(), size))
    truncated = (_child_text(root, "IsTruncated") or "").strip().lower() == "true"
    marker = _child_text(root, "NextPartNumberMarker")
    return PartsPage(parts, marker.strip() if truncated and marker else None)


def replace_text(body: bytes, element: str, value: str) -> bytes:
    """The document with the text of every child element ``element`` of its root replaced."""
    root = _parse(body)
    for child in root:
        if _local(child.tag) == element:
            child.text = value
    return _serialize(root)


@dataclass(frozen=True)
class PlaintextAttributes:
    """What GetObjectAttributes reports of an encrypted object, for the plaintext."""

    etag: str | None  # without quotes; None keeps the stored one (a v1 object)
    size: int
    checksum: tuple[str, str, str] | None  # (algorithm, base64, type) of a kept checksum
    part_sizes: list[int] | None  # plaintext size of each part of a multipart object


def rewrite_object_attributes(
    body: bytes,
    found: PlaintextAttributes,
    requested: set[str],
    max_parts: int = 1000,
    part_number_marker: int = 0,
) -> bytes:
    """A GetObjectAttributes response with the stored object's ETag, size, checksums and parts
    replaced by the plaintext's (never a stored value that describes the ciphertext)."""
    root = _parse(body)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    kept = {_local(c.tag): c for c in root}
    for child in list(root):
        root.remove(child)

    def add(name: str, text: str | None = None) -> ET.Element:
        element = ET.SubElement(root, ns + name)
        element.text = text
        return element

    if "ETag" in requested:
        etag = (
            found.etag
            if found.etag is not None
            else (kept["ETag"].text if "ETag" in kept else None)
        )
        if etag is not None:
            add("ETag", etag)
    if "Checksum" in requested and found.checksum is not None:
        checksum = add("Checksum")
        algorithm, value, kind = found.checksum
        ET.SubElement(checksum, ns + f"Checksum{algorithm.upper()}").text = value
        ET.SubElement(checksum, ns + "ChecksumType").text = kind
    if "ObjectParts" in requested and found.part_sizes is not None:
        parts = add("ObjectParts")
        total = len(found.part_sizes)
        shown = [
            (number, size)
            for number, size in enumerate(found.part_sizes, start=1)
            if number > part_number_marker
        ][:max_parts]
        truncated = bool(shown) and shown[-1][0] < total
        ET.SubElement(parts, ns + "PartsCount").text = str(total)
        ET.SubElement(parts, ns + "PartNumberMarker").text = str(part_number_marker)
        next_marker = str(shown[-1][0]) if shown else str(part_number_marker)
        ET.SubElement(parts, ns + "NextPartNumberMarker").text = next_marker
        ET.SubElement(parts, ns + "MaxParts").text = str(max_parts)
        ET.SubElement(parts, ns + "IsTruncated").text = "true" if truncated else "false"
        for number, size in shown:
            part = ET.SubElement(parts, ns + "Part")
            ET.SubElement(part, ns + "PartNumber").text = str(number)
            ET.SubElement(part, ns + "Size").text = str(size)
    if "StorageClass" in kept:
        root.append(kept["StorageClass"])
    if "ObjectSize" in requested:
        add("ObjectSize", str(found.size))
    return _serialize(root)


def set_checksum(body: bytes, algorithm: str, value: str, checksum_type: str) -> bytes:
    """A CompleteMultipartUpload result with the object's checksum (and its type) set, every
    checksum of another algorithm the upstream reported removed."""
    root = _parse(body)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    for child in list(root):
        if _local(child.tag) in _CHECKSUM_ELEMENTS or _local(child.tag) == "ChecksumType":
            root.remove(child)
    ET.SubElement(root, ns + f"Checksum{algorithm.upper()}").text = value
    ET.SubElement(root, ns + "ChecksumType").text = checksum_type
    return _serialize(root)


def without_checksums(body: bytes) -> bytes:
    """A copy result (CopyObjectResult, CopyPartResult) without the checksums the upstream
    computed for the stored ciphertext."""
    root = _parse(body)
    for child in list(root):
        if _local(child.tag) in _CHECKSUM_ELEMENTS or _local(child.tag) == "ChecksumType":
            root.remove(child)
    return _serialize(root)


def upload_id(body: bytes) -> str | None:
    """The UploadId of an InitiateMultipartUploadResult."""
    root = _parse(body)
    for element in root.iter():
        if _local(element.tag) == "UploadId" and element.text:
            return element.text
    return None


def root_text(body: bytes, element: str) -> str | None:
    """The text of the root's child ``element`` (a CopyObjectResult's ETag), if any."""
    text = _child_text(_parse(body), element)
    return text.strip() if text else None


def tag_set(body: bytes) -> list[tuple[str, str]]:
    """The (Key, Value) pairs of a Tagging document (GetObjectTagging, PutObjectTagging)."""
    root = _parse(body)
    out = []
    for element in root.iter():
        if _local(element.tag) == "Tag":
            out.append((_child_text(element, "Key") or "", _child_text(element, "Value") or ""))
    return out


def tagging_body(tags: list[tuple[str, str]]) -> bytes:
    """A Tagging document with these tags."""
    items = "".join(f"<Tag><Key>{escape(k)}</Key><Value>{escape(v)}</Value></Tag>" for k, v in tags)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Tagging xmlns="{S3_NS}"><TagSet>{items}</TagSet></Tagging>'
    ).encode()


def copy_result(element: str, etag: str, last_modified: str) -> bytes:
    """A CopyObjectResult or CopyPartResult document for a copy the proxy made itself."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<{element} xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<LastModified>{last_modified}</LastModified><ETag>{etag}</ETag></{element}>"
    ).encode()
