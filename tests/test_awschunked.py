"""The aws-chunked decoder with plain bytes."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3proxy.core.awschunked import AwsChunkedDecoder
from s3proxy.core.checksums import new_hasher
from s3proxy.core.errors import IncompleteBody, MalformedChunk
from s3proxy.core.trailing import TrailingChecksumFramer, encoded_length

SIG = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
ECDSA_SIG = "3045022100" + "ab" * 32 + "022037" + "cd" * 31


def encode(
    payload: bytes,
    chunk: int,
    *,
    signature: str | None = SIG,
    trailers: dict[str, str] | None = None,
    eol: bytes = b"\r\n",
    final_blank: bool = True,
) -> bytes:
    ext = (lambda: f";chunk-signature={signature}".encode()) if signature else (lambda: b"")
    out = b""
    for i in range(0, len(payload), chunk):
        piece = payload[i : i + chunk]
        out += f"{len(piece):x}".encode() + ext() + b"\r\n" + piece + b"\r\n"
    out += b"0" + ext() + b"\r\n"
    for name, value in (trailers or {}).items():
        out += f"{name}:{value}".encode() + eol
    if trailers and signature:
        out += f"x-amz-trailer-signature:{signature}".encode() + eol
    if final_blank:
        out += b"\r\n"
    return out


def decode(body: bytes, split: int, decoded_length: int | None = None) -> AwsChunkedDecoder:
    dec = AwsChunkedDecoder(decoded_length)
    out = b""
    for i in range(0, len(body), split):
        out += dec.feed(body[i : i + split])
    dec.finish()
    dec.payload = out  # type: ignore[attr-defined]
    return dec


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(max_size=3000),
    chunk=st.integers(1, 700),
    split=st.integers(1, 300),
    variant=st.sampled_from(["signed", "signed-trailer", "unsigned-trailer", "ecdsa", "lf"]),
)
def test_every_variant_decodes(payload: bytes, chunk: int, split: int, variant: str) -> None:
    trailers = (
        {"x-amz-checksum-crc32": "AAAAAA=="} if "trailer" in variant or variant == "lf" else None
    )
    signature = {"unsigned-trailer": None, "ecdsa": ECDSA_SIG, "lf": None}.get(variant, SIG)
    eol = b"\n" if variant == "lf" else b"\r\n"
    body = encode(payload, chunk, signature=signature, trailers=trailers, eol=eol)
    dec = decode(body, split, len(payload))
    assert dec.payload == payload  # type: ignore[attr-defined]
    assert dec.trailers.get("x-amz-checksum-crc32") == (trailers or {}).get("x-amz-checksum-crc32")


def test_missing_final_blank_line_is_tolerated() -> None:
    body = encode(
        b"hello", 3, signature=None, trailers={"x-amz-checksum-crc32": "x"}, final_blank=False
    )
    assert decode(body, 4).trailers == {"x-amz-checksum-crc32": "x"}


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nhello\r\n0\r\n\r\n",  # not hex
        b"5;foo=bar\r\nhello\r\n0\r\n\r\n",  # unknown extension
        b"3\r\nhello\r\n0\r\n\r\n",  # data longer than its size
        b"5\r\nhello\r\n0\r\n\r\nextra",  # data after the end
        b"5\r\nhello\r\n0\r\nno colon here\r\n\r\n",  # bad trailer
        b"x" * 5000,  # no line end
    ],
)
def test_malformed_framing_is_rejected(body: bytes) -> None:
    with pytest.raises(MalformedChunk):
        decode(body, 7)


@pytest.mark.parametrize(
    "body",
    [
        b"5\r\nhel",  # cut inside data
        b"5\r\nhello\r\n",  # no final chunk
        b"",
    ],
)
def test_truncated_bodies_are_incomplete(body: bytes) -> None:
    with pytest.raises(IncompleteBody):
        decode(body, 3)


def test_decoded_length_is_enforced() -> None:
    body = encode(b"hello world", 4)
    with pytest.raises(IncompleteBody):
        decode(body, 100, decoded_length=12)
    with pytest.raises(MalformedChunk):
        decode(body, 100, decoded_length=5)


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(0, 3000),
    chunk=st.integers(1, 700),
    pieces=st.lists(st.integers(1, 900), min_size=1, max_size=6),
    algorithm=st.sampled_from(["crc32", "crc32c", "crc64nvme"]),
)
def test_the_upstream_framing_decodes_to_the_body_and_its_checksum(
    size: int, chunk: int, pieces: list[int], algorithm: str
) -> None:
    body = bytes(i % 253 for i in range(size))
    framer = TrailingChecksumFramer(algorithm, size, chunk)
    out, pos, i = [], 0, 0
    while pos < size:
        n = pieces[i % len(pieces)]
        out.append(framer.frame(body[pos : pos + n]))
        pos, i = pos + n, i + 1
    out.append(framer.finish())
    framed = b"".join(out)
    assert len(framed) == framer.length == encoded_length(size, algorithm, chunk)
    decoder = AwsChunkedDecoder(size)
    assert decoder.feed(framed) == body
    decoder.finish()
    hasher = new_hasher(algorithm)
    hasher.update(body)
    expected = base64.b64encode(hasher.digest()).decode()
    assert decoder.trailers == {f"x-amz-checksum-{algorithm}": expected}
    # Every chunk but the last has the fixed size.
    sizes = [int(line.split(b"\r\n")[0], 16) for line in framed.split(b"\r\n")[0:1]]
    assert not size or sizes[0] == min(chunk, size)


def test_the_upstream_framing_refuses_a_body_of_another_length() -> None:
    framer = TrailingChecksumFramer("crc32", 10)
    with pytest.raises(ValueError):
        framer.frame(b"x" * 11)
    framer.frame(b"x" * 9)
    with pytest.raises(ValueError):
        framer.finish()


def test_the_upstream_framing_passes_data_inside_a_chunk_through_uncopied() -> None:
    framer = TrailingChecksumFramer("crc32", 100, 40)
    first = framer.frame(b"a" * 10)  # opens the first chunk: size line, then the data
    assert bytes(first) == b"28\r\n" + b"a" * 10
    middle = bytearray(b"b" * 20)
    assert framer.frame(middle) is middle  # inside the open chunk: the very same buffer
    assert bytes(framer.frame(b"c" * 10)) == b"c" * 10 + b"\r\n"  # closes the chunk
