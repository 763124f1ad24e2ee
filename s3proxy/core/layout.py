"""Where the streams of a stored object lie, and which stored bytes a plaintext read needs.
Pure: headers and integers in, plans out.

A single PutObject is one stream. A multipart object is the concatenation of its parts, each one
or more self-contained streams (docs/format.md). Stream headers carry their plaintext length, so
walking from header to header finds every stream; :func:`discover` does that walk, guessing that
the next streams are as long as the last one (clients upload equal parts) so that the headers can
be fetched in parallel, and fetching one at a time only where a guess was wrong.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Mapping
from dataclasses import dataclass

from s3proxy.core.errors import IntegrityError
from s3proxy.core.format import Header, StreamDecryptor, Trailer, name_binding, parse_header
from s3proxy.core.sizes import (
    HEADER_SIZE,
    TAG_SIZE,
    segment_offset,
    segment_plaintext_length,
    span_for_range,
)


@dataclass(frozen=True)
class StreamInfo:
    stored_offset: int
    plaintext_offset: int
    header: Header
    # v3: the stream's footer as it was authenticated (Layout.with_footers); a read that reaches
    # the stream's end must find these bytes there
    footer: bytes | None = None
    # v3, footer bytes not known (a layout from the shared cache): what its footer must record,
    # checked by the reader once the footer is read (PlanDecryptor.unchecked_footers)
    record: Trailer | None = None

    @property
    def plaintext_length(self) -> int:
        return self.header.plaintext_length

    @property
    def stored_length(self) -> int:
        return self.header.stored_length

    @property
    def end_offset(self) -> int | None:
        """Where the stream's trailer (v2) or footer (v3) starts in the object; None in v1."""
        if not self.header.end_size:
            return None
        return self.stored_offset + self.stored_length - self.header.end_size


@dataclass(frozen=True)
class Piece:
    """The part of one stream a read needs: segments ``first_segment..last_segment``."""

    stream: StreamInfo
    first_segment: int
    last_segment: int
    with_header: bool  # the fetched bytes include this stream's header before its segments
    skip: int  # plaintext bytes to drop from the start of the decrypted segments
    take: int  # plaintext bytes to deliver after that


@dataclass(frozen=True)
class ReadPlan:
    stored_first: int  # first stored byte to fetch
    stored_last: int  # last stored byte to fetch (inclusive)
    pieces: tuple[Piece, ...]
    length: int  # plaintext bytes delivered


@dataclass(frozen=True)
class Layout:
    streams: tuple[StreamInfo, ...]

    @property
    def stored_length(self) -> int:
        last = self.streams[-1]
        return last.stored_offset + last.stored_length

    @property
    def plaintext_length(self) -> int:
        last = self.streams[-1]
        return last.plaintext_offset + last.plaintext_length

    @classmethod
    def from_headers(cls, headers: list[Header]) -> Layout:
        streams = []
        stored = plain = 0
        for header in headers:
            info = StreamInfo(stored, plain, header)
            streams.append(info)
            stored += info.stored_length
            plain += info.plaintext_length
        if not streams:
            raise ValueError("a layout needs at least one stream")
        return cls(tuple(streams))

    def with_footers(self, footers: Mapping[int, bytes]) -> Layout:
        """This layout with the authenticated footers of its v3 streams (by stream index)."""
        if not footers:
            return self
        streams = tuple(
            dataclasses.replace(s, footer=footers[i]) if i in footers else s
            for i, s in enumerate(self.streams)
        )
        return Layout(streams)

    def plan_all(self) -> ReadPlan:
        """Read the whole object: every stream with its header."""
        pieces = tuple(
            Piece(s, 0, _last_segment(s.header), True, 0, s.plaintext_length) for s in self.streams
        )
        return ReadPlan(0, self.stored_length - 1, pieces, self.plaintext_length)

    def plan_range(self, first: int, last: int) -> ReadPlan:
        """Read plaintext bytes ``first..last`` (inclusive, within the object): only the
        segments that hold them, and the headers of streams entered after the first."""
        inside = [
            i
            for i, s in enumerate(self.streams)
            if s.plaintext_length
            and s.plaintext_offset <= last
            and first < s.plaintext_offset + s.plaintext_length
        ]
        if not inside:
            raise ValueError(f"range {first}-{last} outside the object")
        pieces: list[Piece] = []
        for s in self.streams[inside[0] : inside[-1] + 1]:
            with_header = bool(pieces)
            if s.plaintext_length == 0:  # an empty stream between two others: read through it
                pieces.append(Piece(s, 0, 0, True, 0, 0))
                continue
            span = span_for_range(
                max(first, s.plaintext_offset) - s.plaintext_offset,
                min(last, s.plaintext_offset + s.plaintext_length - 1) - s.plaintext_offset,
                s.plaintext_length,
                s.header.segment_size,
            )
            pieces.append(
                Piece(s, span.first_segment, span.last_segment, with_header, span.skip, span.length)
            )
        head = pieces[0]
        stored_first = head.stream.stored_offset + segment_offset(
            head.first_segment, head.stream.header.segment_size
        )
        tail = pieces[-1]
        stored_last = (
            tail.stream.stored_offset
            + segment_offset(tail.last_segment, tail.stream.header.segment_size)
            + segment_plaintext_length(
                tail.last_segment, tail.stream.plaintext_length, tail.stream.header.segment_size
            )
            + TAG_SIZE
            - 1
        )
        if tail.last_segment == _last_segment(tail.stream.header):
            # a read that reaches a stream's end authenticates its trailer, or checks its footer
            stored_last += tail.stream.header.end_size
        return ReadPlan(stored_first, stored_last, tuple(pieces), last - first + 1)


def _last_segment(header: Header) -> int:
    size = header.plaintext_length
    return max(0, -(-size // header.segment_size) - 1)


def check_object_shape(layout: Layout, multipart: bool) -> None:
    """A v2 PutObject stream says it is a whole object: it must be alone, under a marker that
    says so; a v2 part never says so. Catches a part served as a whole object and a whole
    object's stream joined to others (docs/format.md, flags)."""
    for stream in layout.streams:
        header = stream.header
        if header.version < 2:
            continue
        if multipart and header.whole_object:
            raise IntegrityError("The stored object joins a whole object's stream to others.")
        if not multipart and not header.whole_object:
            raise IntegrityError("The stored object is a part of another object, not a whole one.")


def check_name_binding(layout: Layout, bucket: str, key: str, unbound_allowed: bool = True) -> None:
    """A stream bound to its object's name (format v2, flag bit 0) reads only under that name:
    ciphertext moved to another key by someone with access to the bucket is refused. With
    ``unbound_allowed`` false (a proxy that binds names, outside its migration allowance) a
    stream without a binding is refused too: else any unbound ciphertext under the same transit
    key, moved under a bound key, would read as that key's content (docs/threat-model.md)."""
    expected = name_binding(bucket, key)
    for stream in layout.streams:
        if stream.header.name_bound:
            if stream.header.name_binding != expected:
                raise IntegrityError("The stored object was written under another name.")
        elif not unbound_allowed:
            raise IntegrityError(
                "The stored object is not bound to its name, and S3PROXY_UNBOUND_OBJECTS "
                "does not allow reading it."
            )


# Requests in one round of speculative header fetches.
MAX_GUESSES = 64
# S3 allows 10,000 parts, and the proxy writes one stream per part.
MAX_STREAMS = 10_000

Discovery = Generator[list[int], Mapping[int, Header | None], Layout]


def discover(stored_total: int, first: Header) -> Discovery:
    """Find every stream of an object of ``stored_total`` bytes whose first header is ``first``.

    A generator: it yields lists of stored offsets whose 256-byte headers it needs, and is sent
    back a mapping from each offset to the parsed header there (``None`` where the bytes are not a
    valid header). It returns the :class:`Layout`, or raises :class:`IntegrityError` if the
    headers do not tile the object exactly.
    """
    headers = [first]
    offset = first.stored_length
    known: dict[int, Header | None] = {}
    while offset < stored_total:
        if offset not in known:
            step = headers[-1].stored_length
            guesses = [offset]
            while len(guesses) < MAX_GUESSES and guesses[-1] + step < stored_total:
                guesses.append(guesses[-1] + step)
            found = yield guesses
            known.update({o: found.get(o) for o in guesses})
        header = known[offset]
        if header is None:
            raise IntegrityError(
                f"The stored object has no valid stream header at offset {offset}."
            )
        headers.append(header)
        if len(headers) > MAX_STREAMS:
            raise IntegrityError(f"The stored object has more than {MAX_STREAMS} streams.")
        offset += header.stored_length
    if offset != stored_total:
        raise IntegrityError("The stored object's streams do not add up to its size.")
    return Layout.from_headers(headers)


class PlanDecryptor:
    """Decrypts the stored bytes a :class:`ReadPlan` fetched, stream by stream.

    Feed the fetched bytes in order. When a stream's data key is needed, :attr:`needs_key` holds
    that stream's header and :meth:`feed` consumes nothing more until :meth:`provide_key`; then
    call ``feed(b"")`` to continue. Plaintext comes out only from authenticated segments, already
    cut to the plan's range. :meth:`finish` raises unless every byte of the plan arrived.
    """

    def __init__(self, plan: ReadPlan) -> None:
        self._pieces = list(plan.pieces)
        self._index = 0
        self._buffer = bytearray()
        self._decryptor: StreamDecryptor | None = None
        self._skip = 0
        self._take = 0
        self.needs_key: Header | None = None
        self._header_checked = False
        # footers read of streams whose footer bytes were not known (StreamInfo.record): for
        # the caller to open and check before it releases the plaintext :meth:`feed` returned
        # with them; :meth:`finish` refuses while any is left
        self.unchecked_footers: list[tuple[StreamInfo, bytes]] = []

    @property
    def done(self) -> bool:
        return self._index >= len(self._pieces)

    def provide_key(self, data_key: bytes) -> None:
        if self.needs_key is None:
            raise RuntimeError("no key was asked for")
        piece = self._pieces[self._index]
        self._decryptor = StreamDecryptor(
            piece.stream.header, data_key, piece.first_segment, piece.last_segment
        )
        self._skip, self._take = piece.skip, piece.take
        self.needs_key = None

    def feed(self, data: bytes | bytearray | memoryview) -> bytes | bytearray:
        pending: bytes | bytearray | memoryview
        if self._buffer:
            self._buffer += data
            pending, self._buffer = self._buffer, bytearray()
        else:
            pending = data  # the common case: no copy into a buffer first
        out = []
        while not self.done and self.needs_key is None:
            piece = self._pieces[self._index]
            if self._decryptor is None:
                if piece.with_header and not self._header_checked:
                    if len(pending) < HEADER_SIZE:
                        break
                    found = parse_header(bytes(pending[:HEADER_SIZE]))
                    pending = pending[HEADER_SIZE:]
                    if found != piece.stream.header:
                        raise IntegrityError(
                            "A stream header of the stored object changed while it was read."
                        )
                self._header_checked = True
                self.needs_key = piece.stream.header
                break
            plain = self._decryptor.feed(pending)
            pending = b""
            if plain:
                cut = min(self._skip, len(plain))
                self._skip -= cut
                if cut or self._take < len(plain):
                    plain = plain[cut : cut + self._take]
                self._take -= len(plain)
                out.append(plain)
            if not self._decryptor.done:
                break
            footer = self._decryptor.footer
            if (
                footer is not None
                and piece.stream.footer is None
                and piece.stream.record is not None
            ):
                self.unchecked_footers.append((piece.stream, footer))
            else:
                _check_footer(piece.stream, footer)
            pending = self._decryptor.unused
            self._decryptor = None
            self._header_checked = False
            self._index += 1
        if pending:
            if self.done:
                raise IntegrityError("The upstream sent more bytes than the read asked for.")
            self._buffer += pending
        return out[0] if len(out) == 1 else b"".join(out)

    def finish(self) -> None:
        if not self.done or self._buffer:
            raise IntegrityError(
                "The stored object ended before the read was complete (truncated)."
            )
        if self.unchecked_footers:
            raise IntegrityError("A stream's footer was read but never checked.")


def _check_footer(stream: StreamInfo, footer: bytes | None) -> None:
    """A v3 stream read to its end ends with the footer that was authenticated for it."""
    if footer is not None and footer != stream.footer:
        raise IntegrityError("The stored object's footer changed while it was read.")


class SequentialDecryptor:
    """Decrypts a stored object read from its first byte to its last, finding each stream's
    header as it comes (for break-glass decryption of a downloaded object; no layout needed).

    The same protocol as :class:`PlanDecryptor`: when :attr:`needs_key` is set, provide the key
    and call ``feed(b"")``. :meth:`finish` raises unless the input ended exactly after a stream.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._header: Header | None = None
        self._decryptor: StreamDecryptor | None = None
        self.needs_key: Header | None = None
        self.streams = 0
        self.footers: list[tuple[Header, bytes]] = []  # v3: for the caller to open and check

    def provide_key(self, data_key: bytes) -> None:
        if self.needs_key is None:
            raise RuntimeError("no key was asked for")
        self._decryptor = StreamDecryptor(self.needs_key, data_key)
        self._header, self.needs_key = self.needs_key, None

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        self._buffer += data
        out = []
        while self.needs_key is None:
            if self._decryptor is None:
                if len(self._buffer) < HEADER_SIZE:
                    break
                self.needs_key = parse_header(bytes(self._buffer[:HEADER_SIZE]))
                del self._buffer[:HEADER_SIZE]
                break
            out.append(self._decryptor.feed(self._buffer))
            self._buffer = bytearray()
            if not self._decryptor.done:
                break
            if self._decryptor.footer is not None:
                assert self._header is not None
                self.footers.append((self._header, self._decryptor.footer))
            self._buffer = bytearray(self._decryptor.unused)
            self._decryptor = None
            self.streams += 1
        return b"".join(out)

    def finish(self) -> None:
        if self._decryptor is not None or self.needs_key is not None or self._buffer:
            raise IntegrityError(
                "The object ends inside a stream (truncated or not an s3proxy object)."
            )
        if self.streams == 0:
            raise IntegrityError("The input holds no s3proxy stream.")
