"""Entries of the shared metadata cache (docs/metadata.md, Shared cache): what a HEAD or a
listing needs of an object (its plaintext size, ETag and checksum), sealed under a key derived
from the metadata key with the object's identity as associated data, and the name an entry has
in the cache, keyed so the cache shows no object names. Pure code, no I/O.

An entry is::

    clear  = "S3PC" ‖ format 01 ‖ metadata key version (be32) ‖ salt (16 random bytes)
    EK     = HKDF-SHA256(IKM = MK_v, salt = salt, info = "s3proxy cache entry v1", L = 32)
    entry  = clear ‖ AES-256-GCM-Encrypt(EK, nonce = 12 zero bytes, facts, aad = clear ‖ identity)

so it opens only for the exact object (bucket, key, version, stored ETag and stored size) it
was written for: an entry left over from an overwritten object, or copied under another name,
fails authentication like a damaged one.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from s3proxy.core.checksums import CHECKSUM_ALGORITHMS
from s3proxy.core.errors import IntegrityError
from s3proxy.core.footer import MetadataKey
from s3proxy.core.objectinfo import ObjectChecksum, ObjectSummary
from s3proxy.core.objectsums import COMPOSITE, FULL_OBJECT

ENTRY_MAGIC = b"S3PC"
ENTRY_FORMAT = 1
FACTS_FORMAT = 1
ENTRY_SALT_SIZE = 16
CACHE_NAME_PREFIX = "s3proxy:m1:"
MAX_ETAG = 128  # a multipart ETag is 32 hex digits, "-", up to 5 digits, in quotes: 41
MAX_CHECKSUM = 128  # a SHA-256 in base64 is 44 characters, "-N" adds up to 6
MAX_SIZE = 2**63 - 1
CHECKSUM_TYPES = (COMPOSITE, FULL_OBJECT)
_ENTRY_INFO = b"s3proxy cache entry v1"
_NAMES_INFO = b"s3proxy cache names v1"
_NONCE = bytes(12)  # every entry has a key of its own (a fresh salt)
_TAG_SIZE = 16
_KEY_CACHE = 4096

_CLEAR = struct.Struct(">4sBI16s")  # magic, format, metadata key version, salt
_SALT_AT = _CLEAR.size - ENTRY_SALT_SIZE
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
# format, plaintext size, hidden tag count, then: ETag, algorithm code, checksum, type code
# (strings u8-prefixed)
_FACTS_HEAD = struct.Struct(">BQB")
_MIN_FACTS = _FACTS_HEAD.size + 4  # every string empty or absent, both codes 0
_MAX_FACTS = _FACTS_HEAD.size + 4 + MAX_ETAG + MAX_CHECKSUM
MIN_ENTRY_SIZE = _CLEAR.size + _MIN_FACTS + _TAG_SIZE
MAX_ENTRY_SIZE = _CLEAR.size + _MAX_FACTS + _TAG_SIZE


def _printable(value: str, limit: int, what: str) -> None:
    """Whether ``value`` is 1 to ``limit`` printable ASCII characters without spaces (of ASCII,
    ``isprintable`` leaves out the controls and DEL, and the space is the one left to refuse)."""
    if not (
        value.isascii() and 0 < len(value) <= limit and value.isprintable() and " " not in value
    ):
        raise ValueError(f"{what} must be 1 to {limit} printable ASCII characters")


@dataclass(frozen=True)
class ObjectFacts:
    """What a HEAD or a listing answers about an object's plaintext: its size, its ETag as S3
    shows it (in quotes) and its checksum as ``x-amz-checksum-<algorithm>`` shows it."""

    plaintext_size: int
    etag: str
    checksum_algorithm: str | None = None  # one of CHECKSUM_ALGORITHMS
    checksum: str | None = None  # base64, with -N for a COMPOSITE multipart checksum
    checksum_type: str | None = None  # COMPOSITE, FULL_OBJECT or None
    hidden_tags: int = 0  # how many of the object's tags are the proxy's (its manifest): 0 or 1

    def __post_init__(self) -> None:
        if not 0 <= self.plaintext_size <= MAX_SIZE:
            raise ValueError("a plaintext size must be from 0 to 2**63 - 1")
        if self.hidden_tags not in (0, 1):
            raise ValueError("an object has no more than one tag of the proxy's")
        _printable(self.etag, MAX_ETAG, "an ETag")
        if (self.checksum_algorithm is None) != (self.checksum is None):
            raise ValueError("a checksum and its algorithm go together")
        if self.checksum_algorithm is not None and (
            self.checksum_algorithm not in CHECKSUM_ALGORITHMS
        ):
            raise ValueError(f"unknown checksum algorithm {self.checksum_algorithm!r}")
        if self.checksum is not None:
            _printable(self.checksum, MAX_CHECKSUM, "a checksum")
        if self.checksum_type is not None and (
            self.checksum is None or self.checksum_type not in CHECKSUM_TYPES
        ):
            raise ValueError("a checksum type is COMPOSITE or FULL_OBJECT, and needs a checksum")

    def encode(self) -> bytes:
        etag = self.etag.encode("ascii")
        checksum = (self.checksum or "").encode("ascii")
        algorithm = 0
        if self.checksum_algorithm is not None:
            algorithm = CHECKSUM_ALGORITHMS.index(self.checksum_algorithm) + 1
        kind = 0 if self.checksum_type is None else CHECKSUM_TYPES.index(self.checksum_type) + 1
        return b"".join(
            (
                _FACTS_HEAD.pack(FACTS_FORMAT, self.plaintext_size, self.hidden_tags),
                bytes([len(etag)]),
                etag,
                bytes([algorithm, len(checksum)]),
                checksum,
                bytes([kind]),
            )
        )

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> ObjectFacts:
        """The facts :meth:`encode` wrote; :class:`IntegrityError` for anything else."""
        data = bytes(data)
        if not _MIN_FACTS <= len(data) <= _MAX_FACTS:
            raise IntegrityError("a cache entry's facts of the wrong size")
        version, size, hidden = _FACTS_HEAD.unpack_from(data)
        try:
            etag, offset = _string(data, _FACTS_HEAD.size)
            algorithm = data[offset]
            checksum, offset = _string(data, offset + 1)
            kind = data[offset]
            if version != FACTS_FORMAT or offset + 1 != len(data):
                raise ValueError("format or length")
            if algorithm > len(CHECKSUM_ALGORITHMS) or kind > len(CHECKSUM_TYPES):
                raise ValueError("unknown code")
            return cls(
                plaintext_size=size,
                etag=etag,
                checksum_algorithm=CHECKSUM_ALGORITHMS[algorithm - 1] if algorithm else None,
                checksum=checksum if algorithm or checksum else None,
                checksum_type=CHECKSUM_TYPES[kind - 1] if kind else None,
                hidden_tags=hidden,
            )
        except (ValueError, IndexError) as exc:
            raise IntegrityError("malformed cache entry facts") from exc


def facts_of(summary: ObjectSummary) -> ObjectFacts | None:
    """The facts an entry holds of ``summary``; None for what has none to share (a v1 object,
    which keeps its stored ETag, or values an entry cannot hold)."""
    if summary.etag is None:
        return None
    checksum = summary.checksum
    try:
        return ObjectFacts(
            plaintext_size=summary.size,
            etag=summary.etag,
            checksum_algorithm=checksum.algorithm if checksum else None,
            checksum=checksum.value if checksum else None,
            checksum_type=checksum.type if checksum else None,
            hidden_tags=summary.hidden_tags,
        )
    except ValueError:
        return None


def summary_of(facts: ObjectFacts) -> ObjectSummary:
    """What a HEAD or a listing answers from an entry's facts."""
    checksum = None
    if facts.checksum_algorithm and facts.checksum and facts.checksum_type:
        checksum = ObjectChecksum(facts.checksum_algorithm, facts.checksum, facts.checksum_type)
    return ObjectSummary(facts.plaintext_size, facts.etag, checksum, facts.hidden_tags)


def _string(data: bytes, offset: int) -> tuple[str, int]:
    """A u8-length-prefixed ASCII string at ``offset``, and the offset after it."""
    length = data[offset]
    end = offset + 1 + length
    if end > len(data):
        raise ValueError("a string runs past the end")
    return data[offset + 1 : end].decode("ascii"), end


@dataclass(frozen=True)
class ObjectIdentity:
    """Which object, exactly, an entry describes: its name, version and what the store shows of
    the stored (encrypted) object. Any difference makes the entry fail to open."""

    bucket: str
    key: str
    version_id: str  # "" if none
    stored_etag: str  # as the store shows it
    stored_size: int

    def encode(self) -> bytes:
        """Four be32-length-prefixed UTF-8 fields, then the stored size (be64)."""
        if not 0 <= self.stored_size <= MAX_SIZE:
            raise ValueError("a stored size must be from 0 to 2**63 - 1")
        fields = (self.bucket, self.key, self.version_id, self.stored_etag)
        parts: list[bytes] = []
        for text in fields:
            data = text.encode("utf-8", "surrogatepass")
            parts += (_U32.pack(len(data)), data)
        parts.append(_U64.pack(self.stored_size))
        return b"".join(parts)


def seal_entry(
    metadata_key: MetadataKey,
    identity: ObjectIdentity,
    facts: ObjectFacts,
    salt: bytes | None = None,
) -> bytes:
    """The cache entry of ``facts`` about the object ``identity``, sealed under
    ``metadata_key`` (the latest one, as writers use)."""
    salt = os.urandom(ENTRY_SALT_SIZE) if salt is None else salt
    if len(salt) != ENTRY_SALT_SIZE:
        raise ValueError(f"a cache entry's salt has {ENTRY_SALT_SIZE} bytes")
    clear = _CLEAR.pack(ENTRY_MAGIC, ENTRY_FORMAT, metadata_key.version, salt)
    aead = AESGCM(_entry_key(metadata_key.key, salt))
    return clear + aead.encrypt(_NONCE, facts.encode(), clear + identity.encode())


def entry_key_version(blob: bytes | bytearray | memoryview) -> int:
    """The metadata key version that opens the entry ``blob`` (its clear part, checked)."""
    if not MIN_ENTRY_SIZE <= len(blob) <= MAX_ENTRY_SIZE:
        raise IntegrityError("an s3proxy cache entry of the wrong size")
    magic, version, key_version, _ = _CLEAR.unpack_from(blob)
    if magic != ENTRY_MAGIC or version != ENTRY_FORMAT or key_version == 0:
        raise IntegrityError("malformed s3proxy cache entry")
    return int(key_version)


def open_entry(
    metadata_key: MetadataKey, identity: ObjectIdentity, blob: bytes | bytearray | memoryview
) -> ObjectFacts:
    """The facts of the entry ``blob``, if it was sealed under ``metadata_key`` for exactly the
    object ``identity``; :class:`IntegrityError` otherwise."""
    if entry_key_version(blob) != metadata_key.version:
        raise IntegrityError("the cache entry is sealed under another metadata key version")
    clear = bytes(blob[: _CLEAR.size])
    salt = clear[_SALT_AT:]
    try:
        facts = AESGCM(_entry_key(metadata_key.key, salt)).decrypt(
            _NONCE, bytes(blob[_CLEAR.size :]), clear + identity.encode()
        )
    except (InvalidTag, ValueError) as exc:
        raise IntegrityError("the cache entry failed authentication") from exc
    return ObjectFacts.decode(facts)


def cache_name(metadata_key: MetadataKey, bucket: str, key: str) -> str:
    """The cache's name for the object ``bucket``/``key``: an HMAC under a key derived from
    ``metadata_key`` (the latest), so the cache holds no object names."""
    bucket_bytes = bucket.encode("utf-8", "surrogatepass")
    if len(bucket_bytes) > 0xFFFF:
        raise ValueError("a bucket name of more than 65535 bytes")
    message = struct.pack(">H", len(bucket_bytes)) + bucket_bytes
    message += key.encode("utf-8", "surrogatepass")
    digest = hmac.new(_names_key(metadata_key.key), message, hashlib.sha256).hexdigest()
    return CACHE_NAME_PREFIX + digest


@functools.lru_cache(maxsize=_KEY_CACHE)
def _entry_key(metadata_key: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_ENTRY_INFO).derive(
        metadata_key
    )


@functools.lru_cache(maxsize=16)
def _names_key(metadata_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_NAMES_INFO).derive(
        metadata_key
    )
