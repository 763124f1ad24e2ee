"""Size and range arithmetic of the at-rest format (see docs/format.md). Pure integers, no I/O.

A stream is a fixed-size header followed by segments. Every segment but the last holds exactly
``segment_size`` plaintext bytes; the last holds 1..segment_size bytes, or 0 for an empty stream,
which still has one (empty, authenticated) segment. Each segment adds a 16-byte GCM tag.
"""

from __future__ import annotations

from dataclasses import dataclass

from s3proxy.core.numbers import parse_decimal

# The pieces in which bodies are read from a socket (client or upstream) and relayed.
READ_CHUNK = 256 * 1024

HEADER_SIZE = 256
TAG_SIZE = 16
# Format v2 ends every stream with a sealed record of this many bytes (64 + a 16-byte tag).
TRAILER_PLAINTEXT_SIZE = 64
TRAILER_SIZE = TRAILER_PLAINTEXT_SIZE + TAG_SIZE
# Format v3 ends every stream with a footer instead: 32 bytes in the clear (what opens it), then a
# sealed record of 112 bytes and its tag (docs/format.md, Footer).
FOOTER_CLEAR_SIZE = 32
FOOTER_RECORD_SIZE = 112
FOOTER_SIZE = FOOTER_CLEAR_SIZE + FOOTER_RECORD_SIZE + TAG_SIZE
DEFAULT_SEGMENT_SIZE = 64 * 1024
MAX_SEGMENT_SIZE = 8 * 1024 * 1024
MAX_SEGMENTS = 2**32


def segment_count(plaintext_length: int, segment_size: int) -> int:
    """Number of segments of a stream of ``plaintext_length`` bytes (at least one)."""
    if plaintext_length < 0:
        raise ValueError("negative plaintext length")
    return max(1, -(-plaintext_length // segment_size))


def trailer_size(version: int) -> int:
    """Bytes after the last segment: none in v1, the trailer (80) in v2, the footer (160) in
    v3."""
    return {1: 0, 2: TRAILER_SIZE}.get(version, FOOTER_SIZE)


def ciphertext_length(plaintext_length: int, segment_size: int, version: int) -> int:
    """Exact stored size of a stream of format ``version`` holding ``plaintext_length`` bytes."""
    segments = segment_count(plaintext_length, segment_size)
    return HEADER_SIZE + plaintext_length + TAG_SIZE * segments + trailer_size(version)


def plaintext_length(ciphertext_len: int, segment_size: int, version: int) -> int:
    """Inverse of :func:`ciphertext_length`; ``ValueError`` if no plaintext length maps to it."""
    body = ciphertext_len - HEADER_SIZE - trailer_size(version)
    if body < TAG_SIZE:
        raise ValueError(f"{ciphertext_len} bytes is too short for an encrypted stream")
    full, rest = divmod(body, segment_size + TAG_SIZE)
    if rest == 0:
        return full * segment_size
    if rest > TAG_SIZE or (full == 0 and rest == TAG_SIZE):
        return full * segment_size + rest - TAG_SIZE
    raise ValueError(f"{ciphertext_len} bytes is not a possible encrypted stream size")


def segment_plaintext_length(index: int, plaintext_length: int, segment_size: int) -> int:
    """Plaintext bytes held by segment ``index`` of a stream."""
    last = segment_count(plaintext_length, segment_size) - 1
    if not 0 <= index <= last:
        raise ValueError(f"segment {index} out of range 0..{last}")
    if index < last:
        return segment_size
    return plaintext_length - last * segment_size


def segment_offset(index: int, segment_size: int) -> int:
    """Offset of segment ``index`` from the start of the stream (header included)."""
    return HEADER_SIZE + index * (segment_size + TAG_SIZE)


@dataclass(frozen=True)
class SegmentSpan:
    """The segments that cover a plaintext byte range, and where they lie in the stream."""

    first_segment: int
    last_segment: int
    ciphertext_start: int  # offset in the stream of the first byte to fetch
    ciphertext_end: int  # offset in the stream of the last byte to fetch (inclusive)
    skip: int  # plaintext bytes to drop from the first segment
    length: int  # plaintext bytes to deliver


def span_for_range(first: int, last: int, plaintext_len: int, segment_size: int) -> SegmentSpan:
    """Segments to fetch and decrypt for plaintext bytes ``first..last`` (inclusive)."""
    if not 0 <= first <= last < plaintext_len:
        raise ValueError(f"range {first}-{last} outside 0..{plaintext_len - 1}")
    i0 = first // segment_size
    i1 = last // segment_size
    end = segment_offset(i1, segment_size) + TAG_SIZE
    end += segment_plaintext_length(i1, plaintext_len, segment_size) - 1
    return SegmentSpan(
        first_segment=i0,
        last_segment=i1,
        ciphertext_start=segment_offset(i0, segment_size),
        ciphertext_end=end,
        skip=first - i0 * segment_size,
        length=last - first + 1,
    )


class RangeNotSatisfiable(Exception):
    """The Range header names no byte of the object (HTTP 416)."""


def parse_range(value: str, total: int) -> tuple[int, int] | None:
    """The inclusive byte range a ``Range`` header selects from an object of ``total`` bytes.

    ``None`` means S3 ignores the header and serves the whole object (unparseable, several
    ranges, or a range that ends before it starts); :class:`RangeNotSatisfiable` means 416.
    """
    unit, eq, spec = value.strip().partition("=")
    if not eq or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = (t.strip() for t in spec.strip().partition("-"))
    first, last = parse_decimal(first_text), parse_decimal(last_text)
    if not dash or (first_text and first is None) or (last_text and last is None):
        return None
    final = total - 1
    if (first is None and last == 0) or (first is not None and first > final):
        raise RangeNotSatisfiable(value)
    if first is not None:
        last = final if last is None else min(last, final)
    elif last is not None:
        first = total - min(last, total)
        last = final
    else:
        return None
    if first > last:
        return None
    return first, last
