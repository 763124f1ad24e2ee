"""The body the proxy sends upstream for an upload, framed as aws-chunked with a trailing
checksum of the bytes sent (``STREAMING-UNSIGNED-PAYLOAD-TRAILER``). Pure: bytes in, framed
bytes out.

The upstream verifies the trailing checksum against what it received, so it refuses a body
damaged on the way, and Object Lock buckets (which demand a checksum with every upload) accept
the proxy's writes. The checksum is computed while the body streams; the framing is fixed by
the stored stream's shape, so its length is known before the first byte:

    <hex size>\\r\\n<chunk>\\r\\n      one chunk per piece the caller frames
    0\\r\\n
    x-amz-checksum-<algorithm>:<base64>\\r\\n
    \\r\\n
"""

from __future__ import annotations

import base64

from s3proxy.core.checksums import CHECKSUM_ALGORITHMS, new_hasher

PAYLOAD = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
UPSTREAM_CHECKSUMS = ("crc32", "crc32c", "crc64nvme")


# Chunks of this many bytes (the last one shorter). Large enough that servers which decode
# aws-chunked bodies by concatenation stay fast, below the 16 MiB some servers allow at most.
CHUNK_SIZE = 8 * 1024 * 1024


def _chunk_overhead(size: int) -> int:
    return len(f"{size:x}") + 4  # size line and its CRLF, the CRLF after the data


def trailer(algorithm: str, digest: bytes) -> bytes:
    """The last chunk and the trailer that carries ``digest``."""
    value = base64.b64encode(digest).decode()
    return f"0\r\nx-amz-checksum-{algorithm}:{value}\r\n\r\n".encode()


def encoded_length(total: int, algorithm: str, chunk_size: int = CHUNK_SIZE) -> int:
    """The framed length of a ``total``-byte body with a trailing ``algorithm`` checksum."""
    full, rest = divmod(total, chunk_size)
    framing = full * _chunk_overhead(chunk_size) + (_chunk_overhead(rest) if rest else 0)
    digest_size = len(new_hasher(algorithm).digest())
    return total + framing + len(trailer(algorithm, bytes(digest_size)))


class TrailingChecksumFramer:
    """Frames a body of ``total`` bytes, given in pieces of any size, as fixed-size chunks (no
    piece is held back), and ends with the checksum of all of them."""

    def __init__(self, algorithm: str, total: int, chunk_size: int = CHUNK_SIZE) -> None:
        if algorithm not in CHECKSUM_ALGORITHMS:
            raise ValueError(f"unknown checksum algorithm {algorithm}")
        self.algorithm = algorithm
        self.length = encoded_length(total, algorithm, chunk_size)
        self._hasher = new_hasher(algorithm)
        self._left = total  # body bytes not framed yet
        self._in_chunk = 0  # bytes still due in the open chunk
        self._chunk_size = chunk_size

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The request headers that announce this framing (besides the payload hash)."""
        return [
            ("x-amz-trailer", f"x-amz-checksum-{self.algorithm}"),
            ("x-amz-sdk-checksum-algorithm", self.algorithm.upper()),
        ]

    def frame(self, data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
        """The framed bytes: ``data`` itself where it lies inside the open chunk (no copy),
        else a new buffer with the size lines and line ends it crosses."""
        if len(data) > self._left:
            raise ValueError("more body than announced")
        self._hasher.update(data)
        if 0 < len(data) < self._in_chunk:
            self._in_chunk -= len(data)
            self._left -= len(data)
            return data
        out: list[bytes | memoryview] = []
        view = memoryview(data)
        while view:
            if self._in_chunk == 0:
                self._in_chunk = min(self._chunk_size, self._left)
                out.append(f"{self._in_chunk:x}\r\n".encode())
            take = min(self._in_chunk, len(view))
            out.append(view[:take])
            view = view[take:]
            self._in_chunk -= take
            self._left -= take
            if self._in_chunk == 0:
                out.append(b"\r\n")
        return b"".join(out)

    def finish(self) -> bytes:
        if self._left:
            raise ValueError("the body ended before its announced length")
        return trailer(self.algorithm, self._hasher.digest())
