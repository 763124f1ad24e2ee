"""The proxy's metadata on a stored object: the ``x-amz-meta-s3proxy-encryption`` marker (format
version, segment size, multipart, the client's checksum choice) and the v1 plaintext checksum."""

from __future__ import annotations

from collections.abc import Mapping

from s3proxy.core.errors import IntegrityError
from s3proxy.core.headers import own_metadata, parse_marker
from s3proxy.core.numbers import parse_decimal


class Marker:
    """The fields of an object's ``x-amz-meta-s3proxy-encryption`` metadata."""

    def __init__(
        self,
        segment_size: int,
        multipart: bool,
        checksum: str | None = None,
        version: int = 1,
        checksum_algorithm: str | None = None,
        checksum_type: str | None = None,
    ) -> None:
        self.segment_size = segment_size
        self.multipart = multipart
        self.checksum = checksum  # v1: "<algorithm>:<base64>" of the whole plaintext, if known
        self.version = version  # the format version the object's streams were written in
        # Multipart: the checksum algorithm and type the client chose at CreateMultipartUpload.
        self.checksum_algorithm = checksum_algorithm
        self.checksum_type = checksum_type

    def checksum_headers(self) -> list[tuple[str, str]]:
        """The plaintext's checksum as S3 reports a full-object checksum."""
        if self.checksum is None or ":" not in self.checksum:
            return []
        algorithm, _, value = self.checksum.partition(":")
        return [(f"x-amz-checksum-{algorithm}", value), ("x-amz-checksum-type", "FULL_OBJECT")]

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> Marker | None:
        """The marker of the stored object whose response headers are ``headers``."""
        value = own_metadata(headers, "encryption")
        if value is None:
            return None
        fields = parse_marker(value)
        seg = parse_decimal(fields.get("seg"), low=1)
        version = fields.get("v")
        if version not in ("1", "2", "3") or seg is None:
            raise IntegrityError(
                "The stored object carries an s3proxy marker this version cannot read."
            )
        return cls(
            seg,
            fields.get("mp") == "1",
            own_metadata(headers, "checksum"),
            int(version),
            fields.get("ck") or None,
            fields.get("ct") or None,
        )
