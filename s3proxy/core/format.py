"""The at-rest format, version 1: a sans-IO streaming AES-256-GCM encryptor and decryptor.

docs/format.md is the specification; this module is its reference implementation. It holds no
I/O: bytes go in, bytes come out. The data key arrives from the caller (the key service) and the
wrapped data key is carried in the header as an opaque string.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

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
    segment_count,
    segment_plaintext_length,
)

MAGIC = b"S3PE"
VERSION_1 = 1
ALGORITHM_AES256GCM_HKDF_SHA256 = 1
DATA_KEY_SIZE = 32
SALT_SIZE = 16
NONCE_PREFIX_SIZE = 7
AUTHENTICATED_SIZE = 44  # header bytes bound into the stream key
MAX_WRAPPED_KEY_SIZE = HEADER_SIZE - AUTHENTICATED_SIZE - 2
KDF_INFO_LABEL = b"s3proxy stream key v1"

# magic, version, algorithm, header size, segment size, plaintext length, salt, nonce prefix,
# reserved byte
_FIXED = struct.Struct(">4sBBHIQ16s7sx")
_WRAPPED_LEN = struct.Struct(">H")
assert _FIXED.size == AUTHENTICATED_SIZE


@dataclass(frozen=True)
class Header:
    """A parsed stream header."""

    segment_size: int
    plaintext_length: int
    salt: bytes
    nonce_prefix: bytes
    wrapped_key: str
    version: int = VERSION_1
    algorithm: int = ALGORITHM_AES256GCM_HKDF_SHA256

    def authenticated_bytes(self) -> bytes:
        return _FIXED.pack(
            MAGIC,
            self.version,
            self.algorithm,
            HEADER_SIZE,
            self.segment_size,
            self.plaintext_length,
            self.salt,
            self.nonce_prefix,
        )

    def encode(self) -> bytes:
        wrapped = self.wrapped_key.encode("ascii")
        if len(wrapped) > MAX_WRAPPED_KEY_SIZE:
            raise ValueError(f"wrapped key longer than {MAX_WRAPPED_KEY_SIZE} bytes")
        out = self.authenticated_bytes() + _WRAPPED_LEN.pack(len(wrapped)) + wrapped
        return out + bytes(HEADER_SIZE - len(out))


def parse_header(data: bytes) -> Header:
    """Parse and check a stream header; :class:`IntegrityError` if it is not a valid v1 header."""
    if len(data) < HEADER_SIZE:
        raise IntegrityError("stored object is shorter than an encryption header")
    magic, version, algorithm, header_size, seg, length, salt, prefix = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise IntegrityError("stored object does not start with the s3proxy format magic")
    if version != VERSION_1:
        raise IntegrityError(f"unknown s3proxy format version {version}")
    if algorithm != ALGORITHM_AES256GCM_HKDF_SHA256:
        raise IntegrityError(f"unknown s3proxy algorithm {algorithm}")
    if header_size != HEADER_SIZE or data[AUTHENTICATED_SIZE - 1] != 0:
        raise IntegrityError("malformed s3proxy header")
    if not 1 <= seg <= MAX_SEGMENT_SIZE or segment_count(length, seg) > MAX_SEGMENTS:
        raise IntegrityError("s3proxy header has an impossible segment size or length")
    (wrapped_len,) = _WRAPPED_LEN.unpack_from(data, AUTHENTICATED_SIZE)
    start = AUTHENTICATED_SIZE + _WRAPPED_LEN.size
    if not 0 < wrapped_len <= MAX_WRAPPED_KEY_SIZE or any(data[start + wrapped_len : HEADER_SIZE]):
        raise IntegrityError("malformed wrapped key field in s3proxy header")
    try:
        wrapped = bytes(data[start : start + wrapped_len]).decode("ascii")
    except UnicodeDecodeError as exc:
        raise IntegrityError("malformed wrapped key field in s3proxy header") from exc
    return Header(
        segment_size=seg,
        plaintext_length=length,
        salt=bytes(salt),
        nonce_prefix=bytes(prefix),
        wrapped_key=wrapped,
        version=version,
        algorithm=algorithm,
    )


def derive_stream_key(data_key: bytes, header: Header) -> bytes:
    """HKDF-SHA256(data key, salt, info = label || authenticated header bytes)."""
    if len(data_key) != DATA_KEY_SIZE:
        raise ValueError("data key must be 32 bytes")
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=header.salt,
        info=KDF_INFO_LABEL + header.authenticated_bytes(),
    )
    return hkdf.derive(data_key)


def segment_nonce(nonce_prefix: bytes, index: int, last: bool) -> bytes:
    return nonce_prefix + struct.pack(">IB", index, 1 if last else 0)


class StreamEncryptor:
    """Encrypts one stream of a known plaintext length.

    ``header`` is the first output; :meth:`feed` returns the ciphertext of every completed
    segment except the last, which only :meth:`finish` returns, after checking the plaintext
    had exactly the declared length. A caller can therefore withhold the end of the stream (and
    so the whole object) until it has verified the body.
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
    ) -> None:
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
        )
        self.header = self._header.encode()
        self._aead = AESGCM(derive_stream_key(data_key, self._header))
        self._last_index = segment_count(plaintext_length, segment_size) - 1
        self._index = 0
        self._received = 0
        self._buffer = bytearray()

    def _seal(self, plaintext: bytes | bytearray | memoryview) -> bytes:
        last = self._index == self._last_index
        nonce = segment_nonce(self._header.nonce_prefix, self._index, last)
        self._index += 1
        return self._aead.encrypt(nonce, plaintext, None)

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        self._received += len(data)
        if self._received > self._header.plaintext_length:
            raise IncompleteBody("request body is longer than its declared length")
        seg = self._header.segment_size
        view = memoryview(data)
        out = []
        if self._buffer:
            take = min(seg - len(self._buffer), len(view))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) < seg or self._index == self._last_index:
                self._buffer += view  # the last segment waits for finish()
                return b""
            out.append(self._seal(self._buffer))
            self._buffer = bytearray()
        pos = 0
        while len(view) - pos >= seg and self._index < self._last_index:
            out.append(self._seal(view[pos : pos + seg]))
            pos += seg
        self._buffer += view[pos:]
        return out[0] if len(out) == 1 else b"".join(out)

    def finish(self) -> bytes:
        if self._received != self._header.plaintext_length:
            raise IncompleteBody(
                "request body ended before its declared length "
                f"({self._received} of {self._header.plaintext_length} bytes)"
            )
        if self._index != self._last_index:
            raise RuntimeError("finish() called twice")
        return self._seal(self._buffer)


class StreamDecryptor:
    """Decrypts and authenticates segments ``first_segment..last_segment`` of one stream.

    :meth:`feed` takes ciphertext starting at ``first_segment`` and returns plaintext only for
    segments whose tag verified. Bytes past ``last_segment`` are kept in :attr:`unused` (the
    next stream, for a caller that reads several). :meth:`finish` raises unless every wanted
    segment arrived.
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
        self._stop = self._final_index if last_segment is None else last_segment
        if not 0 <= first_segment <= self._stop <= self._final_index:
            raise ValueError("segment range outside the stream")
        self._buffer = bytearray()
        self.unused = b""

    @property
    def done(self) -> bool:
        return self._index > self._stop

    def _segment_size(self) -> int:
        plain = segment_plaintext_length(
            self._index, self._header.plaintext_length, self._header.segment_size
        )
        return plain + TAG_SIZE

    def _open(self, segment: bytes | bytearray | memoryview) -> bytes:
        last = self._index == self._final_index
        nonce = segment_nonce(self._header.nonce_prefix, self._index, last)
        try:
            plaintext = self._aead.decrypt(nonce, segment, None)
        except InvalidTag as exc:
            raise IntegrityError(
                f"segment {self._index} of the stored object failed authentication"
            ) from exc
        self._index += 1
        return plaintext

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        if self.done:
            self.unused += bytes(data)
            return b""
        view = memoryview(data)
        out = []
        if self._buffer:
            take = min(self._segment_size() - len(self._buffer), len(view))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) < self._segment_size():
                return b""
            out.append(self._open(self._buffer))
            self._buffer = bytearray()
        pos = 0
        while not self.done:
            size = self._segment_size()
            if len(view) - pos < size:
                break
            out.append(self._open(view[pos : pos + size]))
            pos += size
        if self.done:
            self.unused = bytes(view[pos:])
        else:
            self._buffer += view[pos:]
        return out[0] if len(out) == 1 else b"".join(out)

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
) -> bytes:
    """Encrypt a whole plaintext held in memory into one stream."""
    enc = StreamEncryptor(
        data_key, wrapped_key, len(plaintext), segment_size, salt=salt, nonce_prefix=nonce_prefix
    )
    return enc.header + enc.feed(plaintext) + enc.finish()


def open_sealed(stream: bytes, data_key: bytes) -> bytes:
    """Decrypt and authenticate a whole stream held in memory; the stream must end exactly
    where its header says."""
    header = parse_header(stream[:HEADER_SIZE])
    dec = StreamDecryptor(header, data_key)
    plaintext = dec.feed(stream[HEADER_SIZE:])
    dec.finish()
    if dec.unused:
        raise IntegrityError("stored object is longer than its header declares")
    return plaintext
