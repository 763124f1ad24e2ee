"""The part list of a CompleteMultipartUpload, checked against the upload's parts: which stored
part each entry names, and so what the completed object must be. Pure: the client's list, the
upload's listing and the parts this process sealed in, the expected parts out (docs/format.md,
Multipart manifest: what Complete verifies).

The completed object must be exactly the streams of the parts the client listed, in its order:
the manifest is built from this list, never from what the upstream assembled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from s3proxy.core.errors import IntegrityError, InvalidPart, InvalidPartOrder, MalformedXML
from s3proxy.core.etags import md5_of_etag, same_etag
from s3proxy.core.format import Header, Trailer


@dataclass(frozen=True)
class ListedPart:
    """A part as ListParts shows it (stored ETag and stored size)."""

    number: int
    etag: str
    size: int


@dataclass(frozen=True)
class ExpectedPart:
    """One entry of the client's list, resolved to the stored part it names."""

    number: int
    stored_etag: str
    stored_size: int
    offset: int  # where its stream must start in the completed object
    claim: bytes | None  # the plaintext MD5 the client named; None: it named the stored ETag
    header: Header | None = None  # the stream this process sealed for it, if it did
    trailer: Trailer | None = None
    footer: bytes | None = None  # (v3) the footer this process sealed for it


OwnPart = Callable[[int], tuple[str, Header, Trailer, bytes | None] | None]


def effective(claimed: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """The list without entries followed at once by another for the same part (a retried
    UploadPart's two answers): the last entry counts, as RGW takes it."""
    return [
        entry
        for index, entry in enumerate(claimed)
        if index + 1 == len(claimed) or claimed[index + 1][0] != entry[0]
    ]


def expected_parts(
    claimed: Sequence[tuple[int, str]], listed: Mapping[int, ListedPart], own: OwnPart
) -> list[ExpectedPart]:
    """The client's list resolved against the upload's parts, in the client's order (of entries
    for one part number in a row, the last); refused as S3 refuses it: ``MalformedXML`` (no
    parts), ``InvalidPartOrder``, ``InvalidPart`` (a part not uploaded, or an ETag that is
    neither the part's plaintext MD5, where this process knows it, nor its stored ETag). A part
    this process sealed is taken with its header and trailer when ListParts shows it with the
    stored ETag its UploadPart was answered."""
    if not claimed:
        raise MalformedXML(
            "The XML you provided was not well-formed or did not validate against our "
            "published schema."
        )
    out: list[ExpectedPart] = []
    previous, offset = 0, 0
    for number, etag in effective(claimed):
        if number <= previous:
            raise InvalidPartOrder()
        previous = number
        part = listed.get(number)
        if part is None:
            raise InvalidPart(number)
        claim = None if same_etag(etag, part.etag) else md5_of_etag(etag)
        if claim is None and not same_etag(etag, part.etag):
            raise InvalidPart(number)
        sealed = own(number)
        header = trailer = footer = None
        if sealed is not None and same_etag(sealed[0], part.etag):
            _, header, trailer, footer = sealed
            if header.stored_length != part.size:
                raise IntegrityError(
                    f"ListParts shows part {number} with a size other than the stream stored."
                )
            if claim is not None and claim != trailer.md5:
                raise InvalidPart(number)
        out.append(
            ExpectedPart(number, part.etag, part.size, offset, claim, header, trailer, footer)
        )
        offset += part.size
    return out


def expected_size(parts: Sequence[ExpectedPart]) -> int:
    """The stored size of the completed object: the sum of its parts' stored sizes."""
    return sum(p.stored_size for p in parts)
