"""The body the proxy sends upstream for an upload as signed aws-chunked
(``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``), for stores that do not take a trailing checksum but
verify chunk signatures (Ceph RGW before Reef). Pure: bytes in, framed bytes out; the signature
arithmetic is handed in (the upstream client takes it from botocore).

Each chunk is signed over the previous signature (the request's own, first) and the chunk's
SHA-256, so the store refuses a body damaged on the way, chunk by chunk:

    <hex size>;chunk-signature=<64 hex>\\r\\n<chunk>\\r\\n      every chunk CHUNK_SIZE bytes,
    ...                                                        the last one shorter
    0;chunk-signature=<64 hex>\\r\\n\\r\\n

A chunk's signature comes before its bytes, so the framer holds at most one chunk's worth of
the pieces it is given (references, not copies) until the chunk is complete.
"""

from __future__ import annotations

import hashlib

from s3proxy.core.sigv4 import SIGNED_CHUNKS, Sign, chunk_string_to_sign

PAYLOAD = SIGNED_CHUNKS
# 64 KiB, as minio-go signs: what the framer holds per upload, and one signature each.
CHUNK_SIZE = 64 * 1024
_SIGNATURE_LENGTH = 64


def _chunk_overhead(size: int) -> int:
    return len(f"{size:x};chunk-signature=") + _SIGNATURE_LENGTH + 4  # two CRLFs


def encoded_length(total: int, chunk_size: int = CHUNK_SIZE) -> int:
    """The framed length of a ``total``-byte body."""
    full, rest = divmod(total, chunk_size)
    framing = full * _chunk_overhead(chunk_size) + (_chunk_overhead(rest) if rest else 0)
    return total + framing + _chunk_overhead(0)


class SignedChunkFramer:
    """Frames a body of ``total`` bytes, given in pieces of any size, as signed chunks of
    ``chunk_size`` bytes. :meth:`seed` gives it the request's signature before the first piece."""

    def __init__(self, total: int, chunk_size: int = CHUNK_SIZE) -> None:
        self.length = encoded_length(total, chunk_size)
        self._left = total  # body bytes not taken yet
        self._chunk_size = chunk_size
        self._pending: list[memoryview] = []
        self._pending_size = 0
        self._hash = hashlib.sha256()
        self._seed: tuple[str, str, Sign] | None = None  # timestamp, scope, sign
        self._previous = ""

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The request headers that announce this framing (besides the payload hash)."""
        return []

    def seed(self, signature: str, timestamp: str, scope: str, sign: Sign) -> None:
        """The signed request's signature, ``X-Amz-Date`` and credential scope, and the function
        that signs with its key."""
        self._seed = (timestamp, scope, sign)
        self._previous = signature

    def frame(self, data: bytes | bytearray | memoryview) -> bytes:
        """The chunks ``data`` completes, framed (empty while a chunk is still filling)."""
        if len(data) > self._left:
            raise ValueError("more body than announced")
        self._left -= len(data)
        out: list[bytes | memoryview] = []
        view = memoryview(data).cast("B")
        while view:
            due = min(self._chunk_size, self._pending_size + self._left + len(view))
            take = min(due - self._pending_size, len(view))
            piece, view = view[:take], view[take:]
            self._hash.update(piece)
            self._pending.append(piece)
            self._pending_size += take
            if self._pending_size == due:
                out += self._chunk()
        return b"".join(out)

    def finish(self) -> bytes:
        """The final zero-length chunk (every byte has been framed by then)."""
        if self._left or self._pending_size:
            raise ValueError("the body ended before its announced length")
        return b"".join(self._chunk())

    def _chunk(self) -> list[bytes | memoryview]:
        if self._seed is None:
            raise RuntimeError("the request was not signed yet")
        timestamp, scope, sign = self._seed
        digest = self._hash.hexdigest()
        signature = sign(chunk_string_to_sign(timestamp, scope, self._previous, digest))
        self._previous = signature
        head = f"{self._pending_size:x};chunk-signature={signature}\r\n".encode()
        out: list[bytes | memoryview] = [head, *self._pending, b"\r\n"]
        self._pending, self._pending_size = [], 0
        self._hash = hashlib.sha256()
        return out
