"""The checksum S3 reports for a whole object, for the plaintext. Pure: the parts' recorded
checksums and lengths in, the value S3 would give out.

A multipart upload chooses its algorithm and checksum type at CreateMultipartUpload:
COMPOSITE is the checksum of the parts' binary checksums followed by ``-N``; FULL_OBJECT (CRCs
only) is the CRC of the whole plaintext, which follows from the parts' CRCs and lengths.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from s3proxy.core.checksums import new_hasher
from s3proxy.core.crc import POLYNOMIALS, combine

COMPOSITE = "COMPOSITE"
FULL_OBJECT = "FULL_OBJECT"


def default_type(algorithm: str) -> str:
    """S3's checksum type when the client names only the algorithm."""
    return FULL_OBJECT if algorithm == "crc64nvme" else COMPOSITE


def valid_type(algorithm: str, checksum_type: str) -> bool:
    return (checksum_type == COMPOSITE and algorithm != "crc64nvme") or (
        checksum_type == FULL_OBJECT and algorithm in POLYNOMIALS
    )


def multipart_checksum(
    algorithm: str, checksum_type: str, parts: Sequence[tuple[bytes, int]]
) -> str | None:
    """The base64 value (with ``-N`` for COMPOSITE) from each part's (checksum, length)."""
    if not parts or not valid_type(algorithm, checksum_type):
        return None
    if checksum_type == COMPOSITE:
        hasher = new_hasher(algorithm)
        for digest, _ in parts:
            hasher.update(digest)
        return f"{base64.b64encode(hasher.digest()).decode()}-{len(parts)}"
    size = len(parts[0][0])
    crc = int.from_bytes(parts[0][0], "big")
    for digest, length in parts[1:]:
        crc = combine(algorithm, crc, int.from_bytes(digest, "big"), length)
    return base64.b64encode(crc.to_bytes(size, "big")).decode()
