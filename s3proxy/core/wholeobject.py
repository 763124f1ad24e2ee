"""The v3 manifest of a multipart object: what a HEAD needs of the whole object (size, ETag,
checksum) and what a read checks its streams against (a digest of the stream list), sealed under
a metadata key like a footer (docs/format.md, Version 3 multipart manifest). Pure: a metadata
key and facts in, a tag value out, and back."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from s3proxy.core.errors import IntegrityError
from s3proxy.core.etags import quoted
from s3proxy.core.footer import MetadataKey
from s3proxy.core.format import CHECKSUM_CODES, CHECKSUM_SIZES, VERSION_3
from s3proxy.core.layout import Layout
from s3proxy.core.objectinfo import ObjectChecksum, ObjectInfo
from s3proxy.core.objectsums import COMPOSITE, FULL_OBJECT
from s3proxy.core.sizes import TAG_SIZE

WHOLE_MAGIC = b"S3PM"
WHOLE_SALT_SIZE = 16
_KEY_INFO = b"s3proxy manifest key v3"
_DIGEST_LABEL = b"s3proxy manifest v3"
_NONCE = bytes(12)  # every record has a key of its own (a fresh salt)

# magic, version, 3 reserved zero bytes, metadata key version, salt, 4 reserved zero bytes
_CLEAR = struct.Struct(">4sB3xI16s4x")
# stream digest, plaintext size, MD5 of the parts' MD5s, part count, common part size, last
# part size, checksum algorithm, type and length, checksum, stored size, last stream's salt,
# 1 reserved zero byte
_RECORD = struct.Struct(">32sQ16sIQQBBB32sQ16s1x")
RECORD_SIZE = _CLEAR.size + _RECORD.size + TAG_SIZE  # 184 bytes
VALUE_LENGTH = -(-RECORD_SIZE * 4 // 3)  # 246 characters of base64url without padding
assert (_CLEAR.size, _RECORD.size, RECORD_SIZE) == (32, 136, 184) and VALUE_LENGTH <= 256

_TYPE_CODES = {COMPOSITE: 1, FULL_OBJECT: 2}
_TYPE_NAMES = {code: name for name, code in _TYPE_CODES.items()}
_CHECKSUM_NAMES = {code: name for name, code in CHECKSUM_CODES.items()}


@dataclass(frozen=True)
class WholeObject:
    """The facts a v3 manifest records of a multipart object."""

    stream_digest: bytes  # stream_digest() of its streams
    plaintext_size: int
    md5_of_md5s: bytes  # the plaintext ETag's MD5 of the parts' MD5s
    parts: int
    part_size: int  # the plaintext size all parts but the last share; 0: they do not
    last_part_size: int
    checksum_algorithm: str | None
    checksum_type: str | None
    checksum: bytes
    stored_size: int
    last_salt: bytes

    @property
    def etag(self) -> str:
        return quoted(f"{self.md5_of_md5s.hex()}-{self.parts}")

    @property
    def object_checksum(self) -> ObjectChecksum | None:
        if self.checksum_algorithm is None or self.checksum_type is None:
            return None
        value = base64.b64encode(self.checksum).decode()
        if self.checksum_type == COMPOSITE:
            value = f"{value}-{self.parts}"
        return ObjectChecksum(self.checksum_algorithm, value, self.checksum_type)


def stream_digest(layout: Layout) -> bytes:
    """SHA-256 of the stream list as the v2 manifest's MAC covers it (salts and sizes)."""
    digest = hashlib.sha256(_DIGEST_LABEL + struct.pack(">I", len(layout.streams)))
    for stream in layout.streams:
        digest.update(stream.header.salt + struct.pack(">Q", stream.plaintext_length))
    return digest.digest()


def common_part_size(sizes: list[int]) -> int:
    """The plaintext size every part but the last has, if they all have one; else 0."""
    leading = set(sizes[:-1])
    return leading.pop() if len(leading) == 1 else 0


def whole_object_of(info: ObjectInfo) -> WholeObject:
    """The facts of a multipart object whose streams are all authenticated (``info``)."""
    md5s = [t.md5 for t in info.trailers if t is not None]
    if len(md5s) != len(info.trailers):
        raise ValueError("a v3 manifest needs every stream's MD5")
    streams = info.layout.streams
    checksum = info.checksum
    algorithm = checksum_type = None
    raw = b""
    if checksum is not None:
        algorithm, checksum_type = checksum.algorithm, checksum.type
        raw = base64.b64decode(checksum.value.partition("-")[0])
    return WholeObject(
        stream_digest(info.layout),
        info.layout.plaintext_length,
        hashlib.md5(b"".join(md5s)).digest(),
        len(streams),
        common_part_size([s.plaintext_length for s in streams]),
        streams[-1].plaintext_length,
        algorithm,
        checksum_type,
        raw,
        info.layout.stored_length,
        streams[-1].header.salt,
    )


def check_layout(facts: WholeObject, layout: Layout) -> None:
    """Raise unless ``facts`` record exactly these streams (order, salts, sizes)."""
    if (
        facts.parts != len(layout.streams)
        or facts.stored_size != layout.stored_length
        or facts.plaintext_size != layout.plaintext_length
        or facts.last_salt != layout.streams[-1].header.salt
        or facts.stream_digest != stream_digest(layout)
    ):
        raise IntegrityError("The multipart object's parts do not match its manifest.")


def seal_whole(metadata_key: MetadataKey, facts: WholeObject, salt: bytes | None = None) -> str:
    """The tag value recording ``facts`` (:data:`VALUE_LENGTH` characters)."""
    salt = os.urandom(WHOLE_SALT_SIZE) if salt is None else salt
    clear = _CLEAR.pack(WHOLE_MAGIC, VERSION_3, metadata_key.version, salt)
    algorithm = facts.checksum_algorithm
    if (algorithm is None) != (facts.checksum_type is None) or len(facts.checksum) != (
        CHECKSUM_SIZES.get(algorithm or "", 0)
    ):
        raise ValueError("a checksum needs its algorithm, type and size")
    record = _RECORD.pack(
        facts.stream_digest,
        facts.plaintext_size,
        facts.md5_of_md5s,
        facts.parts,
        facts.part_size,
        facts.last_part_size,
        0 if algorithm is None else CHECKSUM_CODES[algorithm],
        _TYPE_CODES.get(facts.checksum_type or "", 0),
        len(facts.checksum),
        facts.checksum,
        facts.stored_size,
        facts.last_salt,
    )
    sealed = AESGCM(_record_key(metadata_key.key, salt)).encrypt(_NONCE, record, clear)
    return base64.urlsafe_b64encode(clear + sealed).decode().rstrip("=")


def _decode(value: str) -> bytes:
    if len(value) != VALUE_LENGTH:
        raise IntegrityError("malformed s3proxy manifest")
    try:
        data = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise IntegrityError("malformed s3proxy manifest") from exc
    if len(data) != RECORD_SIZE or base64.urlsafe_b64encode(data).decode().rstrip("=") != value:
        raise IntegrityError("malformed s3proxy manifest")
    return data


def is_whole_record(value: str) -> bool:
    """Whether a manifest tag value is a v3 record (else a v2 manifest, or nothing valid)."""
    try:
        return _decode(value).startswith(WHOLE_MAGIC)
    except IntegrityError:
        return False


def whole_key_version(value: str) -> int:
    """The metadata key version that opens the record ``value`` (its clear part, checked)."""
    data = _decode(value)
    magic, version, key_version, _ = _CLEAR.unpack_from(data)
    reserved = data[5:8] + data[_CLEAR.size - 4 : _CLEAR.size]
    if magic != WHOLE_MAGIC or version != VERSION_3 or any(reserved) or key_version == 0:
        raise IntegrityError("malformed s3proxy manifest")
    return int(key_version)


def open_whole(metadata_key: MetadataKey, value: str) -> WholeObject:
    """Authenticate and parse a v3 manifest; :class:`IntegrityError` for anything wrong."""
    if whole_key_version(value) != metadata_key.version:
        raise ValueError("the manifest is sealed under another metadata key version")
    data = _decode(value)
    clear = data[: _CLEAR.size]
    salt = _CLEAR.unpack(clear)[3]
    try:
        record = AESGCM(_record_key(metadata_key.key, salt)).decrypt(
            _NONCE, data[_CLEAR.size :], clear
        )
    except InvalidTag as exc:
        raise IntegrityError("The multipart object's manifest failed authentication.") from exc
    return _parse(record)


def _parse(record: bytes) -> WholeObject:
    fields = _RECORD.unpack(record)
    digest, plain, md5, parts, part_size, last_size = fields[:6]
    code, type_code, length, checksum, stored, last_salt = fields[6:]
    algorithm = _CHECKSUM_NAMES.get(code)
    checksum_type = _TYPE_NAMES.get(type_code)
    well_formed = (
        record[-1] == 0
        and (code == 0 or algorithm is not None)
        and (algorithm is None) == (checksum_type is None)
        and (type_code == 0 or checksum_type is not None)
        and length == CHECKSUM_SIZES.get(algorithm or "", 0)
        and not any(checksum[length:])
        and parts >= 1
        and last_size <= plain
        and (part_size == 0 or (parts >= 2 and plain == (parts - 1) * part_size + last_size))
    )
    if not well_formed:
        raise IntegrityError("malformed s3proxy manifest")
    return WholeObject(
        digest,
        plain,
        md5,
        parts,
        part_size,
        last_size,
        algorithm,
        checksum_type,
        checksum[:length],
        stored,
        last_salt,
    )


def _record_key(metadata_key: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_KEY_INFO).derive(
        metadata_key
    )
