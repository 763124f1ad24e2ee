"""Request body digests and checksums (Content-MD5, x-amz-checksum-*), verified against the
plaintext the client sent. Pure: bytes in, verdicts out.

S3 checksum values are the base64 of the big-endian digest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from s3proxy.core.errors import BadDigest, InvalidDigest, InvalidRequest


class _Crc:
    def __init__(self, fn: Callable[[Any, int], int], size: int) -> None:
        self._fn = fn
        self._size = size
        self._value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._value = self._fn(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._size, "big")


def new_hasher(algorithm: str) -> _Crc | hashlib._Hash:
    if algorithm == "crc32":
        return _Crc(zlib.crc32, 4)
    if algorithm in ("crc32c", "crc64nvme"):
        # awscrt only where a client or the upstream uses these (its import costs the start)
        from awscrt import checksums as crt

        if algorithm == "crc32c":
            return _Crc(crt.crc32c, 4)
        return _Crc(crt.crc64nvme, 8)
    if algorithm == "sha1":
        return hashlib.sha1()
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "md5":
        return hashlib.md5()
    raise InvalidRequest(f"Unsupported checksum algorithm {algorithm!r}.")


CHECKSUM_ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")


@dataclass
class _Expected:
    header: str
    value: bytes | None  # None: to come in a trailer
    hasher: _Crc | hashlib._Hash


@dataclass
class BodyVerifier:
    """Feeds the plaintext to every digest the client declared and checks them at the end."""

    _expected: list[_Expected] = field(default_factory=list)

    def expect(self, header: str, algorithm: str, value_b64: str) -> None:
        try:
            value = base64.b64decode(value_b64.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            if algorithm == "md5":
                raise InvalidDigest("The Content-MD5 you specified was invalid.") from exc
            raise InvalidRequest(f"Value for {header} header is invalid.") from exc
        hasher = new_hasher(algorithm)
        if len(value) != len(hasher.digest()):
            if algorithm == "md5":
                raise InvalidDigest("The Content-MD5 you specified was invalid.")
            raise InvalidRequest(f"Value for {header} header is invalid.")
        self._expected.append(_Expected(header, value, hasher))

    def expect_trailer(self, header: str) -> None:
        """A checksum whose value the body's trailer will carry (``x-amz-trailer``)."""
        algorithm = header.lower().removeprefix("x-amz-checksum-")
        if not header.lower().startswith("x-amz-checksum-") or algorithm not in CHECKSUM_ALGORITHMS:
            raise InvalidRequest(f"Unsupported trailer {header}.")
        self._expected.append(_Expected(header.lower(), None, new_hasher(algorithm)))

    def trailers_arrived(self, trailers: dict[str, str]) -> None:
        for e in self._expected:
            if e.value is not None:
                continue
            text = trailers.get(e.header)
            if text is None:
                raise InvalidRequest(
                    f"The trailer {e.header} declared in x-amz-trailer is missing."
                )
            try:
                e.value = base64.b64decode(text.strip(), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidRequest(f"Value for {e.header} trailing header is invalid.") from exc

    def update(self, data: bytes | bytearray | memoryview) -> None:
        for e in self._expected:
            e.hasher.update(data)

    def verify(self) -> None:
        for e in self._expected:
            if e.value is None:
                raise InvalidRequest(
                    f"The trailer {e.header} declared in x-amz-trailer is missing."
                )
            if e.hasher.digest() != e.value:
                if e.header == "content-md5":
                    raise BadDigest("The Content-MD5 you specified did not match what we received.")
                algo = e.header.removeprefix("x-amz-checksum-").upper()
                raise BadDigest(f"The {algo} you specified did not match the calculated checksum.")

    def declared_checksum(self) -> tuple[str, bytes] | None:
        """The first full-object ``x-amz-checksum-*`` the client declared (header or trailer,
        once it arrived), as (algorithm, binary value): what the stream's trailer records."""
        for e in self._expected:
            if e.header.startswith("x-amz-checksum-") and e.value is not None:
                return e.header.removeprefix("x-amz-checksum-"), e.value
        return None

    def computed(self) -> dict[str, str]:
        """Header name -> base64 value of every digest computed so far."""
        return {e.header: base64.b64encode(e.hasher.digest()).decode() for e in self._expected}


def verifier_for(headers: Iterable[tuple[str, str]]) -> BodyVerifier:
    """A verifier for the Content-MD5 and x-amz-checksum-* headers of a request, and for the
    checksums its ``x-amz-trailer`` announces."""
    verifier = BodyVerifier()
    for name, value in headers:
        lname = name.lower()
        if lname == "x-amz-trailer":
            for trailer in value.split(","):
                if trailer.strip():
                    verifier.expect_trailer(trailer.strip())
        elif lname == "content-md5":
            verifier.expect(lname, "md5", value)
        elif lname.startswith("x-amz-checksum-") and lname != "x-amz-checksum-type":
            algorithm = lname.removeprefix("x-amz-checksum-")
            if algorithm not in CHECKSUM_ALGORITHMS:
                raise InvalidRequest(f"Unsupported checksum header {name}.")
            verifier.expect(lname, algorithm, value)
    return verifier
