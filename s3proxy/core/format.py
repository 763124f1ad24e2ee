"""The at-rest format: a sans-IO streaming AES-256-GCM encryptor and decryptor.

docs/format.md is the specification; this module is its reference implementation. It writes
version 2 (a stream ends with a sealed record of its plaintext MD5 and checksum) and, when asked,
version 3 (a stream ends with a footer sealed under a metadata key: docs/format.md, Footer,
and s3proxy.core.footer); it reads versions 1, 2 and 3. It holds no I/O: bytes go in, bytes
come out. The data key arrives from the caller (the key service) and the wrapped data key is
carried in the header as an opaque string.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from s3proxy.core.errors import IncompleteBody, IntegrityError
from s3proxy.core.sizes import (
    DEFAULT_SEGMENT_SIZE,
    HEADER_SIZE,
    MAX_SEGMENT_SIZE,
    MAX_SEGMENTS,
    TAG_SIZE,
    TRAILER_PLAINTEXT_SIZE,
    TRAILER_SIZE,
    ciphertext_length,
    segment_count,
    segment_plaintext_length,
    trailer_size,
)

MAGIC = b"S3PE"
VERSION_1 = 1
VERSION_2 = 2
VERSION_3 = 3
WHOLE_OBJECT_VERSION = VERSION_3  # what a PutObject's stream is written as
PART_VERSION = VERSION_3  # what a part's stream is written as (v2 before this release)
ALGORITHM_AES256GCM_HKDF_SHA256 = 1
DATA_KEY_SIZE = 32
STREAM_KEY_CACHE = 1024  # derived stream keys remembered (32 bytes each)
HEADER_CACHE = 1024  # parsed headers remembered, by their 256 bytes (under 1 MB)
SALT_SIZE = 16
NONCE_PREFIX_SIZE = 7
NAME_BINDING_SIZE = 16
FLAG_NAME_BOUND = 0x01  # the stream is bound to its object's name
FLAG_MANIFEST_PART = 0x02  # a part of a multipart object whose completion records a manifest
FLAG_WHOLE_OBJECT = 0x04  # a PutObject stream: the whole object, never one of several
KNOWN_FLAGS = FLAG_NAME_BOUND | FLAG_MANIFEST_PART | FLAG_WHOLE_OBJECT
_KDF_LABELS = {
    VERSION_1: b"s3proxy stream key v1",
    VERSION_2: b"s3proxy stream key v2",
    VERSION_3: b"s3proxy stream key v3",
}

# v1: magic, version, algorithm, header size, segment size, plaintext length, salt, nonce
# prefix, reserved byte. v2 turns the reserved byte into flags and adds the name binding; v3's
# header is v2's.
_FIXED_V1 = struct.Struct(">4sBBHIQ16s7sx")
_FIXED_V2 = struct.Struct(">4sBBHIQ16s7sB16s")
_FIXED = {VERSION_1: _FIXED_V1, VERSION_2: _FIXED_V2, VERSION_3: _FIXED_V2}
_WRAPPED_LEN = struct.Struct(">H")
AUTHENTICATED_SIZE_V1 = _FIXED_V1.size  # 44 header bytes bound into the stream key
AUTHENTICATED_SIZE_V2 = _FIXED_V2.size  # 60
assert (AUTHENTICATED_SIZE_V1, AUTHENTICATED_SIZE_V2) == (44, 60)
MAX_WRAPPED_KEY_SIZE = {
    VERSION_1: HEADER_SIZE - AUTHENTICATED_SIZE_V1 - _WRAPPED_LEN.size,
    VERSION_2: HEADER_SIZE - AUTHENTICATED_SIZE_V2 - _WRAPPED_LEN.size,
    VERSION_3: HEADER_SIZE - AUTHENTICATED_SIZE_V2 - _WRAPPED_LEN.size,
}

# The sealed record that ends a v2 stream: plaintext MD5, checksum algorithm, checksum length,
# checksum (zero padded to 32 bytes), 14 reserved zero bytes.
_TRAILER = struct.Struct(">16sBB32s14x")
assert _TRAILER.size == TRAILER_PLAINTEXT_SIZE
TRAILER_FLAG = 2  # the last nonce byte of the record (segments use 0 and 1)
CHECKSUM_CODES = {"crc32": 1, "crc32c": 2, "crc64nvme": 3, "sha1": 4, "sha256": 5}
CHECKSUM_SIZES = {"crc32": 4, "crc32c": 4, "crc64nvme": 8, "sha1": 20, "sha256": 32}
_CHECKSUM_NAMES = {code: name for name, code in CHECKSUM_CODES.items()}


def name_binding(bucket: str, key: str) -> bytes:
    """The 16 bytes that bind a stream to the object name it was written under."""
    b = bucket.encode()
    digest = hashlib.sha256(b"s3proxy object name v2\x00" + struct.pack(">H", len(b)) + b)
    digest.update(key.encode())
    return digest.digest()[:NAME_BINDING_SIZE]


@dataclass(frozen=True)
class Trailer:
    """What a v2 stream records about its plaintext after the last segment."""

    md5: bytes
    checksum_algorithm: str | None = None  # one of CHECKSUM_CODES, if the client sent one
    checksum: bytes = b""

    def encode(self) -> bytes:
        code = 0 if self.checksum_algorithm is None else CHECKSUM_CODES[self.checksum_algorithm]
        if len(self.md5) != 16 or len(self.checksum) != CHECKSUM_SIZES.get(
            self.checksum_algorithm or "", 0
        ):
            raise ValueError("trailer digest of the wrong size")
        return _TRAILER.pack(self.md5, code, len(self.checksum), self.checksum)


def parse_trailer(data: bytes) -> Trailer:
    md5, code, size, checksum = _TRAILER.unpack(data)
    name = _CHECKSUM_NAMES.get(code)
    if code and name is None:
        raise IntegrityError("s3proxy stream trailer names an unknown checksum algorithm")
    if size != CHECKSUM_SIZES.get(name or "", 0) or any(checksum[size:]) or any(data[50:]):
        raise IntegrityError("malformed s3proxy stream trailer")
    return Trailer(md5, name, checksum[:size])


@dataclass(frozen=True)
class Header:
    """A parsed stream header."""

    segment_size: int
    plaintext_length: int
    salt: bytes
    nonce_prefix: bytes
    wrapped_key: str
    version: int = VERSION_2
    algorithm: int = ALGORITHM_AES256GCM_HKDF_SHA256
    flags: int = 0  # v2 only
    name_binding: bytes = bytes(NAME_BINDING_SIZE)  # v2 only; meaningful with FLAG_NAME_BOUND

    @property
    def stored_length(self) -> int:
        """The exact stored size of this stream."""
        return ciphertext_length(self.plaintext_length, self.segment_size, self.version)

    @property
    def has_trailer(self) -> bool:
        """A v2 stream: it ends with a trailer sealed under its own stream key."""
        return self.version == VERSION_2

    @property
    def has_footer(self) -> bool:
        """A v3 stream: it ends with a footer sealed under a metadata key."""
        return self.version == VERSION_3

    @property
    def end_size(self) -> int:
        """Stored bytes after the last segment (trailer or footer)."""
        return trailer_size(self.version)

    @property
    def name_bound(self) -> bool:
        return bool(self.flags & FLAG_NAME_BOUND)

    @property
    def whole_object(self) -> bool:
        return bool(self.flags & FLAG_WHOLE_OBJECT)

    @property
    def manifest_part(self) -> bool:
        return bool(self.flags & FLAG_MANIFEST_PART)

    def authenticated_bytes(self) -> bytes:
        fields = (
            MAGIC,
            self.version,
            self.algorithm,
            HEADER_SIZE,
            self.segment_size,
            self.plaintext_length,
            self.salt,
            self.nonce_prefix,
        )
        if self.version == VERSION_1:
            return _FIXED_V1.pack(*fields)
        return _FIXED_V2.pack(*fields, self.flags, self.name_binding)

    def encode(self) -> bytes:
        wrapped = self.wrapped_key.encode("ascii")
        limit = MAX_WRAPPED_KEY_SIZE[self.version]
        if len(wrapped) > limit:
            raise ValueError(f"wrapped key longer than {limit} bytes")
        out = self.authenticated_bytes() + _WRAPPED_LEN.pack(len(wrapped)) + wrapped
        return out + bytes(HEADER_SIZE - len(out))


def parse_header(data: bytes) -> Header:
    """Parse and check a stream header of any version this release reads; :class:`IntegrityError`
    if it is not one."""
    if len(data) < HEADER_SIZE:
        raise IntegrityError("stored object is shorter than an encryption header")
    return _parsed_header(bytes(data[:HEADER_SIZE]))


@functools.lru_cache(maxsize=HEADER_CACHE)
def _parsed_header(data: bytes) -> Header:
    """Remembered for the headers read lately: a GET parses its object's first header as it
    arrives and again as the decryptor checks it (the same bytes; a :class:`Header` is
    immutable). Malformed headers raise and are not remembered."""
    return _parse(data, with_wrapped_key=True)


def _wrapped_key(data: bytes, version: int) -> str:
    fixed = _FIXED[version]
    (wrapped_len,) = _WRAPPED_LEN.unpack_from(data, fixed.size)
    start = fixed.size + _WRAPPED_LEN.size
    limit = MAX_WRAPPED_KEY_SIZE[version]
    if not 0 < wrapped_len <= limit or any(data[start + wrapped_len : HEADER_SIZE]):
        raise IntegrityError("malformed wrapped key field in s3proxy header")
    try:
        return bytes(data[start : start + wrapped_len]).decode("ascii")
    except UnicodeDecodeError as exc:
        raise IntegrityError("malformed wrapped key field in s3proxy header") from exc


def parse_authenticated(data: bytes) -> Header:
    """The authenticated bytes of a header (any version), checked; ``wrapped_key`` empty."""
    return _parse(data, with_wrapped_key=False)


def _parse(data: bytes, with_wrapped_key: bool) -> Header:
    if data[0:4] != MAGIC:
        raise IntegrityError("stored object does not start with the s3proxy format magic")
    version = data[4]
    fixed = _FIXED.get(version)
    if fixed is None:
        raise IntegrityError(f"unknown s3proxy format version {version}")
    if len(data) < fixed.size:
        raise IntegrityError("stored object is shorter than an encryption header")
    flags, binding = 0, bytes(NAME_BINDING_SIZE)
    if version == VERSION_1:
        _, _, algorithm, header_size, seg, length, salt, prefix = fixed.unpack_from(data)
        malformed = data[fixed.size - 1] != 0
    else:
        _, _, algorithm, header_size, seg, length, salt, prefix, flags, binding = fixed.unpack_from(
            data
        )
        unbound_with_binding = not flags & FLAG_NAME_BOUND and any(binding)
        both = FLAG_WHOLE_OBJECT | FLAG_MANIFEST_PART
        malformed = bool(flags & ~KNOWN_FLAGS) or unbound_with_binding or flags & both == both
    if algorithm != ALGORITHM_AES256GCM_HKDF_SHA256:
        raise IntegrityError(f"unknown s3proxy algorithm {algorithm}")
    if header_size != HEADER_SIZE or malformed:
        raise IntegrityError("malformed s3proxy header")
    if not 1 <= seg <= MAX_SEGMENT_SIZE or segment_count(length, seg) > MAX_SEGMENTS:
        raise IntegrityError("s3proxy header has an impossible segment size or length")
    return Header(
        segment_size=seg,
        plaintext_length=length,
        salt=bytes(salt),
        nonce_prefix=bytes(prefix),
        wrapped_key=_wrapped_key(data, version) if with_wrapped_key else "",
        version=version,
        algorithm=algorithm,
        flags=flags,
        name_binding=bytes(binding),
    )


def derive_stream_key(data_key: bytes, header: Header) -> bytes:
    """HKDF-SHA256(data key, salt, info = label || authenticated header bytes)."""
    if len(data_key) != DATA_KEY_SIZE:
        raise ValueError("data key must be 32 bytes")
    return _hkdf(data_key, header.salt, _KDF_LABELS[header.version] + header.authenticated_bytes())


@functools.lru_cache(maxsize=STREAM_KEY_CACHE)
def _hkdf(data_key: bytes, salt: bytes, info: bytes) -> bytes:
    """Remembered for the streams read or written lately: every GET of an object derives its
    stream keys again (docs/performance-history.md, Profile (baseline) and Changes and what
    they bought). The cache holds derived keys only of data keys the caller already holds in
    plaintext."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(data_key)


_NONCE_TAIL = struct.Struct(">IB")


def trailer_nonce(header: Header) -> bytes:
    """The record after the last segment: the index one past it, and its own flag byte."""
    count = segment_count(header.plaintext_length, header.segment_size)
    return header.nonce_prefix + struct.pack(">IB", count, TRAILER_FLAG)


def open_trailer(data_key: bytes, header: Header, sealed: bytes) -> Trailer:
    """Authenticate and parse the sealed record that ends a v2 stream."""
    if not header.has_trailer or len(sealed) != TRAILER_SIZE:
        raise IntegrityError("the stream has no trailer of that size")
    return _open_trailer(AESGCM(derive_stream_key(data_key, header)), header, sealed)


def _open_trailer(aead: AESGCM, header: Header, sealed: bytes | bytearray | memoryview) -> Trailer:
    try:
        plain = aead.decrypt(trailer_nonce(header), bytes(sealed), None)
    except InvalidTag as exc:
        raise IntegrityError("the stored object's stream trailer failed authentication") from exc
    return parse_trailer(plain)


class Digest(Protocol):
    """What computes a stream's plaintext MD5 (hashlib's, or one that runs beside the caller)."""

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


class StreamEncryptor:
    """Encrypts one stream of a known plaintext length.

    ``header`` is the first output; :meth:`feed` returns the ciphertext of every completed
    segment except the last, which only :meth:`finish` returns (with the v2 trailer), after
    checking the plaintext had exactly the declared length. A caller can therefore withhold the
    end of the stream (and so the whole object) until it has verified the body. :attr:`md5` is
    the plaintext's MD5 once :meth:`finish` has run (v2).
    """

    def __init__(
        self,
        data_key: bytes,
        wrapped_key: str,
        plaintext_length: int,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        *,
        salt: bytes | None = None,
        nonce_prefix: bytes | None = None,
        version: int = VERSION_2,
        binding: bytes | None = None,
        whole_object: bool = False,
        manifest_part: bool = False,
        end: Callable[[Header, Trailer], bytes] | None = None,
        md5: Digest | None = None,
    ) -> None:
        if (version == VERSION_3) != (end is not None):
            raise ValueError("a v3 stream, and only one, ends with a footer (s3proxy.core.footer)")
        self._end = end
        if not 1 <= segment_size <= MAX_SEGMENT_SIZE:
            raise ValueError("segment size out of range")
        if segment_count(plaintext_length, segment_size) > MAX_SEGMENTS:
            raise ValueError("stream too long for the format")
        self._header = Header(
            segment_size=segment_size,
            plaintext_length=plaintext_length,
            salt=os.urandom(SALT_SIZE) if salt is None else salt,
            nonce_prefix=os.urandom(NONCE_PREFIX_SIZE) if nonce_prefix is None else nonce_prefix,
            wrapped_key=wrapped_key,
            version=version,
            flags=(0 if binding is None else FLAG_NAME_BOUND)
            | (FLAG_WHOLE_OBJECT if whole_object else 0)
            | (FLAG_MANIFEST_PART if manifest_part else 0),
            name_binding=bytes(NAME_BINDING_SIZE) if binding is None else binding,
        )
        if version not in _FIXED or (
            (binding is not None or whole_object or manifest_part) and version == VERSION_1
        ):
            raise ValueError("unknown format version, or flags v1 cannot hold")
        if whole_object and manifest_part:
            raise ValueError("a stream is a whole object or a part, not both")
        self.header = self._header.encode()
        self._aead = AESGCM(derive_stream_key(data_key, self._header))
        self._last_index = segment_count(plaintext_length, segment_size) - 1
        self._index = 0
        self._received = 0
        self._buffer = bytearray()
        self._md5: Digest | None = None
        if version >= VERSION_2:
            self._md5 = hashlib.md5() if md5 is None else md5
        self.md5: bytes | None = None

    @property
    def parsed_header(self) -> Header:
        return self._header

    def _seal_into(self, plaintext: bytes | bytearray | memoryview, out: memoryview) -> None:
        last = self._index == self._last_index
        nonce = self._header.nonce_prefix + _NONCE_TAIL.pack(self._index, 1 if last else 0)
        self._index += 1
        self._aead.encrypt_into(nonce, plaintext, None, out)

    def feed(self, data: bytes | bytearray | memoryview) -> bytes | bytearray:
        """The ciphertext of the segments the next plaintext bytes complete (none before the
        last, which :meth:`finish` returns), in one new buffer."""
        self._received += len(data)
        if self._received > self._header.plaintext_length:
            raise IncompleteBody("request body is longer than its declared length")
        if self._md5 is not None:
            self._md5.update(data)
        seg = self._header.segment_size
        view = memoryview(data)
        first: bytearray | None = None
        if self._buffer:
            take = min(seg - len(self._buffer), len(view))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) < seg or self._index == self._last_index:
                self._buffer += view  # the last segment waits for finish()
                return b""
            first, self._buffer = self._buffer, bytearray()
        # Whole segments in the rest of the input, never the stream's last one.
        ahead = self._last_index - self._index - (first is not None)
        whole = min(len(view) // seg, ahead)
        count = whole + (first is not None)
        if count == 0:
            self._buffer += view
            return b""
        unit = seg + TAG_SIZE
        out = bytearray(count * unit)
        into = memoryview(out)
        at = 0
        if first is not None:
            self._seal_into(first, into[:unit])
            at = unit
        pos = 0
        for _ in range(whole):
            self._seal_into(view[pos : pos + seg], into[at : at + unit])
            pos += seg
            at += unit
        if pos < len(view):
            self._buffer += view[pos:]
        return out

    def finish(self, checksum_algorithm: str | None = None, checksum: bytes = b"") -> bytes:
        """The last segment and, in v2, the trailer recording the plaintext's MD5 and the
        client's verified checksum of it (if any); in v3 the footer holding the same."""
        if self._received != self._header.plaintext_length:
            raise IncompleteBody(
                "request body ended before its declared length "
                f"({self._received} of {self._header.plaintext_length} bytes)"
            )
        if self._index != self._last_index:
            raise RuntimeError("finish() called twice")
        last = bytearray(len(self._buffer) + TAG_SIZE)
        self._seal_into(self._buffer, memoryview(last))
        if self._md5 is None:
            return bytes(last)
        self.md5 = self._md5.digest()
        trailer = Trailer(self.md5, checksum_algorithm, checksum)
        if self._end is not None:  # v3: the footer, sealed under a metadata key
            return bytes(last + self._end(self._header, trailer))
        return bytes(last + self._aead.encrypt(trailer_nonce(self._header), trailer.encode(), None))


class StreamDecryptor:
    """Decrypts and authenticates segments ``first_segment..last_segment`` of one stream.

    :meth:`feed` takes ciphertext starting at ``first_segment`` and returns plaintext only for
    segments whose tag verified. A read that reaches the final segment of a v2 stream also takes
    the stream's trailer and authenticates it (:attr:`trailer`). Bytes past that are kept in
    :attr:`unused` (the next stream, for a caller that reads several). :meth:`finish` raises
    unless every wanted segment arrived.
    """

    def __init__(
        self,
        header: Header,
        data_key: bytes,
        first_segment: int = 0,
        last_segment: int | None = None,
    ) -> None:
        self._header = header
        self._aead = AESGCM(derive_stream_key(data_key, header))
        self._final_index = segment_count(header.plaintext_length, header.segment_size) - 1
        self._index = first_segment
        stop = self._final_index if last_segment is None else last_segment
        if not 0 <= first_segment <= stop <= self._final_index:
            raise ValueError("segment range outside the stream")
        # The trailer (v2) or footer (v3) is read as one more unit, after the final segment.
        self._stop = stop + 1 if header.end_size and stop == self._final_index else stop
        # Stored sizes, worked out once: a full segment, the final one.
        self._full = header.segment_size + TAG_SIZE
        self._final = (
            segment_plaintext_length(
                self._final_index, header.plaintext_length, header.segment_size
            )
            + TAG_SIZE
        )
        self._buffer = bytearray()
        self.unused = b""
        self.trailer: Trailer | None = None
        self.footer: bytes | None = None  # v3: the footer as read, for the caller to open

    @property
    def done(self) -> bool:
        return self._index > self._stop

    def _size(self, index: int) -> int:
        """The stored size of unit ``index``: a segment, or the trailer after the last."""
        if index < self._final_index:
            return self._full
        return self._final if index == self._final_index else self._header.end_size

    def _open_into(self, unit: bytes | bytearray | memoryview, out: memoryview) -> None:
        index = self._index
        if index > self._final_index:
            if self._header.has_footer:
                self.footer = bytes(unit)  # sealed under a metadata key the caller holds
            else:
                self.trailer = _open_trailer(self._aead, self._header, unit)
            self._index += 1
            return
        nonce = self._header.nonce_prefix + _NONCE_TAIL.pack(
            index, 1 if index == self._final_index else 0
        )
        try:
            self._aead.decrypt_into(nonce, unit, None, out)
        except InvalidTag as exc:
            raise IntegrityError(
                f"segment {index} of the stored object failed authentication"
            ) from exc
        self._index += 1

    def feed(self, data: bytes | bytearray | memoryview) -> bytes | bytearray:
        """The plaintext of every unit the bytes complete, in one new buffer."""
        if self.done:
            self.unused += bytes(data)
            return b""
        view = memoryview(data)
        first: bytearray | None = None
        if self._buffer:
            need = self._size(self._index)
            take = min(need - len(self._buffer), len(view))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) < need:
                return b""
            first, self._buffer = self._buffer, bytearray()
        # The units complete in the input: their stored sizes, one after the other.
        sizes = [] if first is None else [len(first)]
        index, stop, available = self._index + len(sizes), self._stop, len(view)
        while index <= stop:
            size = self._full if index < self._final_index else self._size(index)
            if size > available:
                break
            sizes.append(size)
            available -= size
            index += 1
        plain = sum(sizes) - TAG_SIZE * len(sizes)
        if index - 1 > self._final_index:  # the trailer or footer (the last unit): no plaintext
            plain -= self._header.end_size - TAG_SIZE
        out = bytearray(plain)
        into = memoryview(out)
        at = pos = 0
        for n, size in enumerate(sizes):
            unit: bytearray | memoryview
            if n == 0 and first is not None:
                unit = first
            else:
                unit = view[pos : pos + size]
                pos += size
            length = 0 if self._index > self._final_index else size - TAG_SIZE
            self._open_into(unit, into[at : at + length])
            at += length
        if self.done:
            self.unused = bytes(view[pos:])
        elif pos < len(view):
            self._buffer += view[pos:]
        return out if plain else b""

    def finish(self) -> None:
        if not self.done:
            raise IntegrityError(f"stored object ended inside segment {self._index} (truncated)")


def seal(
    data_key: bytes,
    wrapped_key: str,
    plaintext: bytes,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    *,
    salt: bytes | None = None,
    nonce_prefix: bytes | None = None,
    version: int = VERSION_2,
    checksum_algorithm: str | None = None,
    checksum: bytes = b"",
    whole_object: bool = False,
    end: Callable[[Header, Trailer], bytes] | None = None,
) -> bytes:
    """Encrypt a whole plaintext held in memory into one stream (v3: ``end`` seals the
    footer)."""
    enc = StreamEncryptor(
        data_key,
        wrapped_key,
        len(plaintext),
        segment_size,
        salt=salt,
        nonce_prefix=nonce_prefix,
        version=version,
        whole_object=whole_object,
        end=end,
    )
    return enc.header + enc.feed(plaintext) + enc.finish(checksum_algorithm, checksum)


def open_sealed(
    stream: bytes, data_key: bytes, check_end: Callable[[Header, bytes], object] | None = None
) -> bytes:
    """Decrypt and authenticate a whole stream held in memory; the stream must end exactly
    where its header says. A v3 stream's footer is checked by ``check_end`` (it raises if the
    footer is not the stream's: s3proxy.core.footer.open_footer)."""
    header = parse_header(stream[:HEADER_SIZE])
    if header.has_footer and check_end is None:  # (a v2 stream whose version byte was altered)
        raise IntegrityError("a v3 stream, whose footer this reader cannot check")
    dec = StreamDecryptor(header, data_key)
    plaintext = dec.feed(stream[HEADER_SIZE:])
    dec.finish()
    if dec.unused:
        raise IntegrityError("stored object is longer than its header declares")
    if check_end is not None and dec.footer is not None:
        check_end(header, dec.footer)
    return plaintext if isinstance(plaintext, bytes) else bytes(plaintext)
