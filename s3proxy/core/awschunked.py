"""A sans-IO decoder for aws-chunked request bodies: bytes in, payload and trailers out.

The framing (all ``STREAMING-*`` payload variants, signed or not, with or without trailers)::

    <hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n   ... repeated ...
    0[;chunk-signature=<sig>]\\r\\n
    [<trailer name>:<value>\\r\\n ...]              (some clients end these lines with \\n only)
    [x-amz-trailer-signature:<sig>\\r\\n]
    \\r\\n

Chunk and trailer signatures are checked only when the caller hands in a checker (client
authentication, :class:`s3proxy.core.sigv4.ChunkSignatures`); otherwise the proxy neither trusts
nor uses the client's signature (it re-signs everything). Trailing checksums are handed to the
caller to verify.
"""

from __future__ import annotations

from typing import Protocol

from s3proxy.core.errors import IncompleteBody, MalformedChunk

STREAMING_PAYLOADS = frozenset(
    {
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
    }
)

_HEX_DIGITS = b"0123456789abcdefABCDEF"
MAX_LINE = 4096
MAX_TRAILERS = 16 * 1024
MAX_CHUNK = 1 << 40


class ChunkChecker(Protocol):
    def begin(self, signature: str | None) -> None: ...
    def update(self, data: bytes) -> None: ...
    def end(self) -> None: ...
    def trailers(self, trailers: dict[str, str]) -> None: ...


class AwsChunkedDecoder:
    """Feed the raw body with :meth:`feed` (returns decoded payload bytes); call :meth:`finish`
    at the end of the body. :attr:`trailers` holds the trailing headers (lower-case names)."""

    def __init__(
        self, decoded_length: int | None = None, signatures: ChunkChecker | None = None
    ) -> None:
        self._signatures = signatures
        self._buffer = bytearray()
        self._state = "size"  # size, data, data-end, trailers, done
        self._remaining = 0
        self._decoded = 0
        self._decoded_length = decoded_length
        self._trailer_bytes = 0
        self.trailers: dict[str, str] = {}

    @property
    def done(self) -> bool:
        return self._state == "done"

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > MAX_LINE:
                raise MalformedChunk("a framing line is too long")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line

    def _size_line(self, line: bytes) -> None:
        size_text, _, extension = line.partition(b";")
        size_text = size_text.strip()
        if not size_text or len(size_text) > 16 or size_text.strip(_HEX_DIGITS):
            raise MalformedChunk("bad chunk size")  # only hex digits: no sign, prefix or "_"
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise MalformedChunk("bad chunk size") from exc
        extension = extension.strip()
        if extension and not extension.startswith(b"chunk-signature="):
            raise MalformedChunk("unknown chunk extension")
        if size > MAX_CHUNK:
            raise MalformedChunk("chunk too large")
        if self._signatures is not None:
            signature = extension.removeprefix(b"chunk-signature=").decode("ascii", "replace")
            self._signatures.begin(signature if extension else None)
            if size == 0:
                self._signatures.end()
        if size == 0:
            self._state = "trailers"
        else:
            self._remaining = size
            self._state = "data"

    def _trailer_line(self, line: bytes) -> None:
        if not line:
            self._state = "done"
            return
        self._trailer_bytes += len(line)
        if self._trailer_bytes > MAX_TRAILERS:
            raise MalformedChunk("trailers too large")
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            raise MalformedChunk("bad trailer line")
        try:
            key = name.strip().decode("ascii").lower()
            self.trailers[key] = value.strip().decode("ascii")
        except UnicodeDecodeError as exc:
            raise MalformedChunk("bad trailer line") from exc

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        if self._state == "done":
            if bytes(data).strip(b"\r\n"):
                raise MalformedChunk("data after the final chunk")
            return b""
        self._buffer += data
        out: list[bytes] = []
        while self._state != "done":
            if self._state == "data":
                if not self._buffer:
                    break
                take = min(self._remaining, len(self._buffer))
                piece = bytes(self._buffer[:take])
                if self._signatures is not None:
                    self._signatures.update(piece)
                out.append(piece)
                del self._buffer[:take]
                self._remaining -= take
                self._decoded += take
                if self._decoded_length is not None and self._decoded > self._decoded_length:
                    raise MalformedChunk("more data than x-amz-decoded-content-length")
                if self._remaining:
                    break
                self._state = "data-end"
                continue
            line = self._line()
            if line is None:
                break
            if self._state == "data-end":
                if line:
                    raise MalformedChunk("chunk data longer than its size")
                if self._signatures is not None:
                    self._signatures.end()
                self._state = "size"
            elif self._state == "size":
                self._size_line(line)
            else:
                self._trailer_line(line)
        if self._state == "done" and bytes(self._buffer).strip(b"\r\n"):
            raise MalformedChunk("data after the final chunk")
        return b"".join(out)

    def finish(self) -> None:
        """The body ended: it must have ended with the final chunk (a missing blank line after
        trailers is tolerated, as some clients omit it)."""
        if self._state == "trailers" and not self._buffer:
            self._state = "done"
        elif self._state == "trailers" and self._buffer:
            self._trailer_line(bytes(self._buffer).rstrip(b"\r"))
            self._buffer.clear()
            self._state = "done"
        if self._state != "done":
            raise IncompleteBody("The aws-chunked request body ended before its final chunk.")
        if self._decoded_length is not None and self._decoded != self._decoded_length:
            raise IncompleteBody(
                "The aws-chunked body's data does not match x-amz-decoded-content-length."
            )
        if self._signatures is not None:
            self._signatures.trailers(self.trailers)
