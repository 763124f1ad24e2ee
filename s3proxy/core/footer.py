"""The footer that ends a v3 stream (docs/format.md, Footer): what a HEAD or a listing needs of
the stream (its authenticated header, plaintext MD5 and checksum), sealed under a *metadata key*
that every proxy of a transit key derives with one Vault call per key version, instead of under
the stream's own data key (one Vault call per data key). Pure code, no I/O: the key arrives from
the caller (s3proxy.keys)."""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from s3proxy.core.errors import IntegrityError
from s3proxy.core.format import (
    AUTHENTICATED_SIZE_V2,
    VERSION_3,
    Header,
    Trailer,
    parse_authenticated,
    parse_trailer,
)
from s3proxy.core.sizes import FOOTER_CLEAR_SIZE, FOOTER_RECORD_SIZE, FOOTER_SIZE

FOOTER_MAGIC = b"S3PF"
FOOTER_SALT_SIZE = 16
METADATA_KEY_SIZE = 32
# What the proxy asks Vault Transit to HMAC (with a given key version) to derive that version's
# metadata key: the same input, so every proxy of the transit key derives the same key.
METADATA_KEY_INPUT = b"s3proxy metadata key v3"
_METADATA_KEY_INFO = b"s3proxy metadata key v3"
_FOOTER_KEY_INFO = b"s3proxy footer key v3"
_FOOTER_NONCE = bytes(12)  # every footer has a key of its own (a fresh salt)
FOOTER_KEY_CACHE = 4096

# magic, version, 3 reserved zero bytes, metadata key version, salt, 4 reserved zero bytes
_CLEAR = struct.Struct(">4sB3xI16s4x")
# the stream's authenticated header bytes, then the trailer record of v2 without its padding
# (MD5, checksum algorithm, checksum length, checksum), then 2 reserved zero bytes
_RECORD = struct.Struct(">60s50s2x")
assert (_CLEAR.size, _RECORD.size) == (FOOTER_CLEAR_SIZE, FOOTER_RECORD_SIZE)
assert AUTHENTICATED_SIZE_V2 == 60


@dataclass(frozen=True)
class MetadataKey:
    """A metadata key: HKDF-SHA256 of Vault Transit's HMAC of :data:`METADATA_KEY_INPUT` under
    transit key version ``version``."""

    version: int
    key: bytes

    @classmethod
    def derive(cls, version: int, hmac: bytes) -> MetadataKey:
        """From the raw HMAC bytes Vault returned for ``version``."""
        if not 1 <= version < 2**32 or len(hmac) < 32:
            raise ValueError("a metadata key needs a key version and a 32-byte HMAC")
        kdf = HKDF(
            algorithm=hashes.SHA256(),
            length=METADATA_KEY_SIZE,
            salt=None,
            info=_METADATA_KEY_INFO,
        )
        return cls(version, kdf.derive(hmac))


@dataclass(frozen=True)
class Footer:
    """An opened footer: the metadata key version that sealed it, the stream's header (its
    authenticated fields; ``wrapped_key`` empty) and what the stream's trailer would say."""

    key_version: int
    salt: bytes
    header: Header
    trailer: Trailer

    def belongs_to(self, header: Header) -> bool:
        """Whether this footer was sealed for the stream of ``header``."""
        return header.authenticated_bytes() == self.header.authenticated_bytes()


def footer_key_version(data: bytes | bytearray | memoryview) -> int:
    """The metadata key version that opens the footer ``data`` (its clear part, checked)."""
    if len(data) != FOOTER_SIZE:
        raise IntegrityError("an s3proxy footer of the wrong size")
    magic, version, key_version, _ = _CLEAR.unpack_from(data)
    reserved = bytes(data[5:8]) + bytes(data[FOOTER_CLEAR_SIZE - 4 : FOOTER_CLEAR_SIZE])
    if magic != FOOTER_MAGIC or version != VERSION_3 or any(reserved) or key_version == 0:
        raise IntegrityError("malformed s3proxy footer")
    return int(key_version)


def seal_footer(
    metadata_key: MetadataKey, header: Header, trailer: Trailer, salt: bytes | None = None
) -> bytes:
    """The footer of the v3 stream of ``header`` whose plaintext ``trailer`` describes."""
    if not header.has_footer:
        raise ValueError("only a v3 stream ends with a footer")
    salt = os.urandom(FOOTER_SALT_SIZE) if salt is None else salt
    clear = _CLEAR.pack(FOOTER_MAGIC, VERSION_3, metadata_key.version, salt)
    record = _RECORD.pack(header.authenticated_bytes(), trailer.encode()[:50])
    aead = AESGCM(_footer_key(metadata_key.key, salt))
    return clear + aead.encrypt(_FOOTER_NONCE, record, clear)


def footer_sealer(
    metadata_key: MetadataKey, salt: bytes | None = None
) -> Callable[[Header, Trailer], bytes]:
    """What a v3 :class:`~s3proxy.core.format.StreamEncryptor` ends its stream with."""
    return functools.partial(seal_footer, metadata_key, salt=salt)


def open_footer(
    metadata_key: MetadataKey,
    data: bytes | bytearray | memoryview,
    header: Header | None = None,
) -> Footer:
    """Authenticate and parse a footer; with ``header``, also check it is that stream's."""
    key_version = footer_key_version(data)
    if key_version != metadata_key.version:
        raise ValueError("the footer is sealed under another metadata key version")
    clear = bytes(data[:FOOTER_CLEAR_SIZE])
    salt = _CLEAR.unpack(clear)[3]
    try:
        record = AESGCM(_footer_key(metadata_key.key, salt)).decrypt(
            _FOOTER_NONCE, bytes(data[FOOTER_CLEAR_SIZE:]), clear
        )
    except InvalidTag as exc:
        raise IntegrityError("the stored object's footer failed authentication") from exc
    copied, trailer_record = _RECORD.unpack(record)
    if any(record[_RECORD.size - 2 :]):
        raise IntegrityError("malformed s3proxy footer")
    found = parse_authenticated(copied)
    if found.version != VERSION_3:
        raise IntegrityError("an s3proxy footer of a stream that is not v3")
    footer = Footer(key_version, salt, found, parse_trailer(trailer_record + bytes(14)))
    if header is not None and not footer.belongs_to(header):
        raise IntegrityError("the stored object's footer belongs to another stream")
    return footer


@functools.lru_cache(maxsize=FOOTER_KEY_CACHE)
def _footer_key(metadata_key: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_FOOTER_KEY_INFO).derive(
        metadata_key
    )
