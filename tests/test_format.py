"""The at-rest format with plain bytes: stored vectors, round trips and tampering."""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3proxy.core.errors import IncompleteBody, IntegrityError
from s3proxy.core.footer import MetadataKey, footer_sealer, open_footer
from s3proxy.core.format import (
    Header,
    StreamDecryptor,
    StreamEncryptor,
    derive_stream_key,
    name_binding,
    open_sealed,
    open_trailer,
    parse_header,
    seal,
)
from s3proxy.core.layout import Layout
from s3proxy.core.manifest import check_manifest, manifest_value
from s3proxy.core.sizes import (
    FOOTER_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    TRAILER_SIZE,
    ciphertext_length,
    span_for_range,
)

VECTOR_DIR = Path(__file__).parent / "vectors"
VECTORS_V1 = json.loads((VECTOR_DIR / "format-v1.json").read_text())["vectors"]
DOC_V2 = json.loads((VECTOR_DIR / "format-v2.json").read_text())
VECTORS_V2 = DOC_V2["vectors"]
VECTORS_V3 = json.loads((VECTOR_DIR / "format-v3.json").read_text())["vectors"]
VECTORS = [(1, v) for v in VECTORS_V1] + [(2, v) for v in VECTORS_V2]
VECTORS += [(3, v) for v in VECTORS_V3]
IDS = [f"v{n}-{v['name']}" for n, v in VECTORS]
KEY = bytes(range(32))
WRAPPED = "vault:v1:c29tZSB3cmFwcGVkIGtleQ=="


@pytest.mark.parametrize(("version", "v"), VECTORS, ids=IDS)
def test_stored_vectors_still_read(version: int, v: dict[str, Any]) -> None:
    stream = bytes.fromhex(v["stream"])
    header = parse_header(stream)
    assert header.version == version
    assert header.wrapped_key == v["wrapped_key"]
    assert header.segment_size == v["segment_size"]
    assert derive_stream_key(bytes.fromhex(v["data_key"]), header).hex() == v["stream_key"]
    metadata_key = _metadata_key(v)
    opened = open_sealed(stream, bytes.fromhex(v["data_key"]), _footer_check(metadata_key))
    assert opened == bytes.fromhex(v["plaintext"])
    if version >= 2:
        if metadata_key is None:
            sealed = stream[-TRAILER_SIZE:]
            trailer = open_trailer(bytes.fromhex(v["data_key"]), header, sealed)
        else:
            trailer = open_footer(metadata_key, stream[-FOOTER_SIZE:], header).trailer
        assert trailer.md5.hex() == v["md5"]
        assert trailer.checksum_algorithm == v.get("checksum_algorithm")
        assert trailer.checksum.hex() == v.get("checksum", "")
        if "bucket" in v:
            assert header.name_bound and header.name_binding == name_binding(v["bucket"], v["key"])
        assert header.whole_object == v.get("whole_object", False)
        assert header.manifest_part == v.get("manifest_part", False)
        expected = (4 if "whole_object" in v else 0) | (1 if "bucket" in v else 0)
        assert header.flags == expected | (2 if "manifest_part" in v else 0)


@pytest.mark.parametrize(("version", "v"), VECTORS, ids=IDS)
def test_stored_vectors_are_what_this_release_writes(version: int, v: dict[str, Any]) -> None:
    binding = name_binding(v["bucket"], v["key"]) if "bucket" in v else None
    enc = StreamEncryptor(
        bytes.fromhex(v["data_key"]),
        v["wrapped_key"],
        len(bytes.fromhex(v["plaintext"])),
        v["segment_size"],
        salt=bytes.fromhex(v["salt"]),
        nonce_prefix=bytes.fromhex(v["nonce_prefix"]),
        version=version,
        binding=binding,
        whole_object=v.get("whole_object", False),
        manifest_part=v.get("manifest_part", False),
        end=_vector_footer(v),
    )
    body = enc.feed(bytes.fromhex(v["plaintext"]))
    checksum = v.get("checksum_algorithm")
    tail = enc.finish(checksum, bytes.fromhex(v["checksum"])) if checksum else enc.finish()
    assert (enc.header + body + tail).hex() == v["stream"]


def _metadata_key(v: dict[str, Any]) -> MetadataKey | None:
    """A v3 vector's metadata key, derived from its HMAC as the proxy derives it."""
    if "metadata_key_hmac" not in v:
        return None
    found = MetadataKey.derive(v["metadata_key_version"], bytes.fromhex(v["metadata_key_hmac"]))
    assert found.key.hex() == v["metadata_key"]
    return found


def _footer_check(metadata_key: MetadataKey | None) -> Any:
    if metadata_key is None:
        return None
    return lambda header, footer: open_footer(metadata_key, footer, header)


def _vector_footer(v: dict[str, Any]) -> Any:
    metadata_key = _metadata_key(v)
    if metadata_key is None:
        return None
    return footer_sealer(metadata_key, bytes.fromhex(v["footer_salt"]))


def test_v2_header_and_trailer_layout_is_as_documented() -> None:
    v = next(v for v in VECTORS_V2 if v["name"] == "bound to its name")
    stream = bytes.fromhex(v["stream"])
    assert stream[0:4] == b"S3PE" and stream[4] == 2 and stream[5] == 1
    assert int.from_bytes(stream[8:12], "big") == 65536
    assert int.from_bytes(stream[12:20], "big") == 12
    assert stream[20:36].hex() == v["salt"] and stream[36:43].hex() == v["nonce_prefix"]
    assert stream[43] == 1  # flags: bound to its name
    assert stream[44:60] == name_binding("b", "k/1")
    n = int.from_bytes(stream[60:62], "big")
    assert stream[62 : 62 + n].decode() == v["wrapped_key"]
    assert not any(stream[62 + n : HEADER_SIZE])
    assert len(stream) == ciphertext_length(12, 65536, 2) == HEADER_SIZE + 12 + 16 + 80


def test_header_layout_is_as_documented() -> None:
    v = next(v for v in VECTORS_V1 if v["name"] == "hello")
    stream = bytes.fromhex(v["stream"])
    assert stream[0:4] == b"S3PE"
    assert stream[4] == 1 and stream[5] == 1
    assert int.from_bytes(stream[6:8], "big") == HEADER_SIZE
    assert int.from_bytes(stream[8:12], "big") == 65536
    assert int.from_bytes(stream[12:20], "big") == 12
    assert stream[20:36].hex() == v["salt"] and stream[36:43].hex() == v["nonce_prefix"]
    assert stream[43] == 0
    n = int.from_bytes(stream[44:46], "big")
    assert stream[46 : 46 + n].decode() == v["wrapped_key"]
    assert not any(stream[46 + n : HEADER_SIZE])
    assert len(stream) == ciphertext_length(12, 65536, 1)


@settings(max_examples=200, deadline=None)
@given(
    plaintext=st.binary(max_size=600),
    seg=st.integers(1, 70),
    chunks=st.lists(st.integers(1, 97), min_size=1, max_size=8),
)
def test_any_size_and_chunking_round_trips(plaintext: bytes, seg: int, chunks: list[int]) -> None:
    enc = StreamEncryptor(KEY, WRAPPED, len(plaintext), seg)
    out = [enc.header]
    pos, i = 0, 0
    while pos < len(plaintext):
        n = chunks[i % len(chunks)]
        out.append(enc.feed(plaintext[pos : pos + n]))
        pos, i = pos + n, i + 1
    out.append(enc.finish())
    stream = b"".join(out)
    assert len(stream) == ciphertext_length(len(plaintext), seg, 2)
    header = parse_header(stream[:HEADER_SIZE])
    dec = StreamDecryptor(header, KEY)
    got = []
    body = stream[HEADER_SIZE:]
    for start in range(0, len(body), chunks[0]):
        got.append(dec.feed(body[start : start + chunks[0]]))
    dec.finish()
    assert b"".join(got) == plaintext and dec.unused == b""
    assert dec.trailer is not None and dec.trailer.md5 == hashlib.md5(plaintext).digest()
    assert enc.md5 == hashlib.md5(plaintext).digest()


@settings(max_examples=200, deadline=None)
@given(data=st.data(), seg=st.integers(1, 40), size=st.integers(1, 400))
def test_ranges_decrypt_from_only_their_segments(data: st.DataObject, seg: int, size: int) -> None:
    plaintext = os.urandom(size)
    stream = seal(KEY, WRAPPED, plaintext, seg)
    first = data.draw(st.integers(0, size - 1))
    last = data.draw(st.integers(first, size - 1))
    span = span_for_range(first, last, size, seg)
    dec = StreamDecryptor(parse_header(stream), KEY, span.first_segment, span.last_segment)
    end = span.ciphertext_end + 1
    if span.last_segment == (size - 1) // seg:
        end += TRAILER_SIZE  # a read to the end of a v2 stream takes its trailer too
    out = dec.feed(stream[span.ciphertext_start : end])
    dec.finish()
    assert out[span.skip : span.skip + span.length] == plaintext[first : last + 1]


def _sealed(n: int = 100, seg: int = 16, version: int = 2) -> tuple[bytes, bytes]:
    plaintext = bytes(i % 256 for i in range(n))
    return plaintext, seal(KEY, WRAPPED, plaintext, seg, version=version)


@pytest.mark.parametrize("version", [1, 2])
def test_every_bit_flip_is_detected_or_changes_the_wrapped_key(version: int) -> None:
    _, stream = _sealed(50, 16, version)
    for pos in range(len(stream)):
        for bit in (0x01, 0x80):
            tampered = bytearray(stream)
            tampered[pos] ^= bit
            try:
                header = parse_header(bytes(tampered))
            except IntegrityError:
                continue
            if header.wrapped_key != WRAPPED:
                # Vault authenticates wrapped keys; an altered one cannot unwrap to this key.
                continue
            with pytest.raises(IntegrityError):
                open_sealed(bytes(tampered), KEY)


@pytest.mark.parametrize("version", [1, 2])
def test_every_truncation_is_detected(version: int) -> None:
    _, stream = _sealed(70, 16, version)
    for n in range(len(stream)):
        with pytest.raises(IntegrityError):
            open_sealed(stream[:n], KEY)


@pytest.mark.parametrize("version", [1, 2])
def test_removed_reordered_and_duplicated_segments_are_detected(version: int) -> None:
    _, stream = _sealed(64, 16, version)  # four full segments
    seg = 16 + TAG_SIZE
    trailer = stream[len(stream) - TRAILER_SIZE :] if version == 2 else b""
    head, body = stream[:HEADER_SIZE], stream[HEADER_SIZE : len(stream) - len(trailer)]
    segs = [body[i : i + seg] for i in range(0, len(body), seg)]
    assert len(segs) == 4
    variants = [
        segs[:1] + segs[2:],  # one removed
        segs[:3],  # last removed: a shorter stream that ends on a full segment
        [segs[1], segs[0], *segs[2:]],  # reordered
        [segs[0], segs[0], *segs[2:]],  # duplicated in place of another
        [*segs, segs[3]],  # appended again
    ]
    for v in variants:
        with pytest.raises(IntegrityError):
            open_sealed(head + b"".join(v) + trailer, KEY)


def test_headers_do_not_move_between_streams_even_with_the_same_data_key() -> None:
    plaintext = b"x" * 40
    a = seal(KEY, WRAPPED, plaintext, 16)
    b = seal(KEY, WRAPPED, plaintext, 16)
    assert a[HEADER_SIZE:] != b[HEADER_SIZE:]  # fresh salt and nonce prefix per stream
    with pytest.raises(IntegrityError):
        open_sealed(b[:HEADER_SIZE] + a[HEADER_SIZE:], KEY)


def test_a_rewrapped_key_keeps_the_stream_readable() -> None:
    plaintext, stream = _sealed(40, 16)
    header = parse_header(stream)
    rewrapped = Header(
        header.segment_size,
        header.plaintext_length,
        header.salt,
        header.nonce_prefix,
        "vault:v2:bmV3bHkgd3JhcHBlZCBrZXk=",
    )
    assert open_sealed(rewrapped.encode() + stream[HEADER_SIZE:], KEY) == plaintext


def test_wrong_data_key_fails() -> None:
    _, stream = _sealed(10, 16)
    with pytest.raises(IntegrityError):
        open_sealed(stream, bytes(32))


def test_encryptor_enforces_the_declared_length() -> None:
    enc = StreamEncryptor(KEY, WRAPPED, 10, 16)
    enc.feed(b"x" * 5)
    with pytest.raises(IncompleteBody):
        enc.finish()
    enc = StreamEncryptor(KEY, WRAPPED, 10, 16)
    with pytest.raises(IncompleteBody):
        enc.feed(b"x" * 11)


def test_encryptor_withholds_the_last_segment_until_finish() -> None:
    enc = StreamEncryptor(KEY, WRAPPED, 32, 16)
    assert len(enc.feed(b"y" * 32)) == 16 + TAG_SIZE  # only the first of two segments
    assert len(enc.finish()) == 16 + TAG_SIZE + TRAILER_SIZE  # the last segment and the trailer


def test_unknown_versions_and_bad_fields_are_rejected() -> None:
    _, stream = _sealed(10, 16, 1)
    for pos, value in [(4, 3), (4, 0), (5, 9), (6, 0), (43, 1)]:
        tampered = bytearray(stream)
        tampered[pos] = value
        with pytest.raises(IntegrityError):
            parse_header(bytes(tampered))
    with pytest.raises(IntegrityError):
        parse_header(stream[:100])


def test_v2_bad_flags_and_stray_bindings_are_rejected() -> None:
    _, stream = _sealed(10, 16, 2)
    for pos, value in [(4, 4), (43, 8), (43, 6), (43, 0x81), (50, 1)]:
        tampered = bytearray(stream)
        tampered[pos] = value
        with pytest.raises(IntegrityError):
            parse_header(bytes(tampered))


def test_v2_trailer_records_md5_and_checksum_and_is_authenticated() -> None:
    plaintext = b"the plaintext" * 10
    crc = zlib.crc32(plaintext).to_bytes(4, "big")
    a = seal(KEY, WRAPPED, plaintext, 16, checksum_algorithm="crc32", checksum=crc)
    b = seal(KEY, WRAPPED, b"other", 16)
    header = parse_header(a)
    trailer = open_trailer(KEY, header, a[-TRAILER_SIZE:])
    assert trailer.md5 == hashlib.md5(plaintext).digest()
    assert (trailer.checksum_algorithm, trailer.checksum) == ("crc32", crc)
    with pytest.raises(IntegrityError):  # another stream's trailer
        open_trailer(KEY, header, b[-TRAILER_SIZE:])
    with pytest.raises(IntegrityError):  # the stream without its trailer
        open_sealed(a[:-TRAILER_SIZE], KEY)
    with pytest.raises(IntegrityError):  # another stream's trailer in place of its own
        open_sealed(a[:-TRAILER_SIZE] + b[-TRAILER_SIZE:], KEY)
    flipped = bytearray(a)
    flipped[-30] ^= 1
    with pytest.raises(IntegrityError):
        open_trailer(KEY, header, bytes(flipped[-TRAILER_SIZE:]))


def test_a_ranged_read_to_the_end_authenticates_the_trailer() -> None:
    plaintext = os.urandom(100)
    stream = seal(KEY, WRAPPED, plaintext, 16)
    header = parse_header(stream)
    dec = StreamDecryptor(header, KEY, 3, 6)
    start = HEADER_SIZE + 3 * (16 + TAG_SIZE)
    out = dec.feed(stream[start:])
    dec.finish()
    assert out == plaintext[48:] and dec.trailer is not None and dec.unused == b""
    dec = StreamDecryptor(header, KEY, 3, 5)  # not to the end: no trailer
    dec.feed(stream[start : start + 3 * (16 + TAG_SIZE)])
    dec.finish()
    assert dec.trailer is None


@pytest.mark.parametrize("m", DOC_V2["manifests"], ids=[m["name"] for m in DOC_V2["manifests"]])
def test_stored_manifest_vectors(m: dict[str, Any]) -> None:
    by_name = {v["name"]: v for v in VECTORS_V2}
    streams = [bytes.fromhex(by_name[name]["stream"]) for name in m["streams"]]
    layout = Layout.from_headers([parse_header(s) for s in streams])
    key = bytes.fromhex(m["first_data_key"])
    assert manifest_value(key, layout) == m["manifest"]
    check_manifest(key, layout, m["manifest"])
    swapped = Layout.from_headers([parse_header(s) for s in reversed(streams)])
    with pytest.raises(IntegrityError):
        check_manifest(key, swapped, m["manifest"])
    with pytest.raises(IntegrityError):
        check_manifest(key, Layout.from_headers([parse_header(streams[0])]), m["manifest"])


def test_a_tampered_segment_among_good_ones_in_one_feed_yields_no_plaintext() -> None:
    """Segments are opened into one buffer per call: a call that reaches a segment failing
    authentication returns nothing at all, not the good segments before it."""
    plaintext, stream = _sealed(160, 16)  # ten segments
    unit = 16 + TAG_SIZE
    tampered = bytearray(stream)
    tampered[HEADER_SIZE + 5 * unit + 3] ^= 0x01  # inside segment 5
    dec = StreamDecryptor(parse_header(stream), KEY)
    body = memoryview(tampered)[HEADER_SIZE:]
    assert dec.feed(body[: 3 * unit + 7]) == plaintext[:48]  # segments 0-2, part of 3
    with pytest.raises(IntegrityError, match="segment 5"):
        dec.feed(body[3 * unit + 7 :])


@pytest.mark.parametrize("split", [1, 31, 32, 33, 95, 200])
def test_a_stream_fed_with_what_follows_it_keeps_the_rest_unused(split: int) -> None:
    plaintext, stream = _sealed(100, 32)
    data = stream + b"next stream"
    dec = StreamDecryptor(parse_header(stream), KEY)
    body = data[HEADER_SIZE:]
    out = bytes(dec.feed(body[:split])) + bytes(dec.feed(body[split:]))
    dec.finish()
    assert out == plaintext and dec.unused == b"next stream"
    assert dec.trailer is not None and dec.trailer.md5 == hashlib.md5(plaintext).digest()


def test_the_encryptor_returns_complete_segments_in_one_buffer() -> None:
    plaintext = os.urandom(5 * 64 + 10)
    enc = StreamEncryptor(KEY, WRAPPED, len(plaintext), 64, salt=bytes(16), nonce_prefix=bytes(7))
    first = enc.feed(plaintext[:100])  # segment 0; 36 bytes wait
    rest = enc.feed(plaintext[100:])  # segments 1-4; the last (10 bytes) waits for finish()
    assert (len(first), len(rest)) == (64 + TAG_SIZE, 4 * (64 + TAG_SIZE))
    stream = enc.header + first + rest + enc.finish()
    expected = seal(KEY, WRAPPED, plaintext, 64, salt=bytes(16), nonce_prefix=bytes(7))
    assert stream == expected and open_sealed(stream, KEY) == plaintext
