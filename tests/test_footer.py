"""The v3 footer (docs/format.md, Footer): what HEAD needs of a stream, sealed under a metadata
key, checked against the stream it ends; tampering, truncation and swaps are refused."""

from __future__ import annotations

import hashlib
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3proxy.core.errors import IntegrityError
from s3proxy.core.footer import (
    MetadataKey,
    footer_key_version,
    footer_sealer,
    open_footer,
)
from s3proxy.core.format import (
    VERSION_3,
    StreamDecryptor,
    StreamEncryptor,
    name_binding,
    open_sealed,
    parse_header,
    seal,
)
from s3proxy.core.sizes import (
    FOOTER_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    ciphertext_length,
    plaintext_length,
    span_for_range,
)

KEY = bytes(range(32))
WRAPPED = "vault:v1:c29tZSB3cmFwcGVkIGtleQ=="
MK = MetadataKey.derive(3, hashlib.sha256(b"an HMAC from Vault").digest())
OTHER_MK = MetadataKey.derive(3, hashlib.sha256(b"another transit key's HMAC").digest())


def _seal3(
    plaintext: bytes, seg: int = 16, algorithm: str | None = None, value: bytes = b""
) -> bytes:
    return seal(
        KEY,
        WRAPPED,
        plaintext,
        seg,
        version=VERSION_3,
        end=footer_sealer(MK),
        checksum_algorithm=algorithm,
        checksum=value,
    )


def _open3(stream: bytes, key: MetadataKey = MK) -> bytes:
    return open_sealed(stream, KEY, lambda header, footer: open_footer(key, footer, header))


@settings(max_examples=60, deadline=None)
@given(
    plaintext=st.binary(max_size=300),
    seg=st.integers(1, 64),
    with_crc=st.booleans(),
)
def test_v3_streams_round_trip_and_their_footer_says_what_head_needs(
    plaintext: bytes, seg: int, with_crc: bool
) -> None:
    crc = zlib.crc32(plaintext).to_bytes(4, "big")
    stream = _seal3(plaintext, seg, "crc32", crc) if with_crc else _seal3(plaintext, seg)
    assert len(stream) == ciphertext_length(len(plaintext), seg, VERSION_3)
    assert plaintext_length(len(stream), seg, VERSION_3) == len(plaintext)
    assert _open3(stream) == plaintext
    footer = open_footer(MK, stream[-FOOTER_SIZE:])  # the footer alone, as a HEAD reads it
    header = parse_header(stream)
    assert footer.belongs_to(header) and footer.key_version == MK.version
    assert footer.header.plaintext_length == len(plaintext)
    assert footer.header.segment_size == seg and footer.header.salt == header.salt
    assert footer.trailer.md5 == hashlib.md5(plaintext).digest()
    assert footer.trailer.checksum_algorithm == ("crc32" if with_crc else None)
    assert footer.trailer.checksum == (crc if with_crc else b"")


def test_the_footer_carries_the_name_binding_for_a_head_to_check() -> None:
    enc = StreamEncryptor(
        KEY,
        WRAPPED,
        5,
        16,
        version=VERSION_3,
        binding=name_binding("b", "k"),
        end=footer_sealer(MK),
    )
    stream = enc.header + enc.feed(b"hello") + enc.finish()
    footer = open_footer(MK, stream[-FOOTER_SIZE:])
    assert footer.header.name_bound and footer.header.name_binding == name_binding("b", "k")


def test_every_bit_flip_in_a_v3_stream_is_detected_or_changes_the_wrapped_key() -> None:
    stream = _seal3(bytes(range(40)), 16)
    for pos in range(len(stream)):
        for bit in (0x01, 0x80):
            tampered = bytearray(stream)
            tampered[pos] ^= bit
            try:
                header = parse_header(bytes(tampered))
                version = footer_key_version(tampered[-FOOTER_SIZE:])
            except IntegrityError:
                continue
            if header.wrapped_key != WRAPPED:
                continue  # Vault authenticates wrapped keys
            # A reader opens the footer with the key of the version it names.
            key = MK if version == MK.version else MetadataKey.derive(version, bytes(32))
            with pytest.raises(IntegrityError):
                _open3(bytes(tampered), key)
            if pos >= len(stream) - FOOTER_SIZE:  # a HEAD, which reads only the footer
                with pytest.raises(IntegrityError):
                    open_footer(key, tampered[-FOOTER_SIZE:], header)


def test_every_truncation_of_a_v3_stream_is_detected() -> None:
    stream = _seal3(bytes(range(70)), 16)
    for n in range(len(stream)):
        with pytest.raises(IntegrityError):
            _open3(stream[:n])


def test_a_footer_from_another_stream_or_under_another_key_is_refused() -> None:
    a, b = _seal3(b"the first plaintext"), _seal3(b"the first plaintext")
    header_a = parse_header(a)
    with pytest.raises(IntegrityError, match="another stream"):
        open_footer(MK, b[-FOOTER_SIZE:], header_a)
    with pytest.raises(IntegrityError):  # read whole: b's footer after a's segments
        _open3(a[:-FOOTER_SIZE] + b[-FOOTER_SIZE:])
    with pytest.raises(IntegrityError):  # a transit key's metadata key opens only its footers
        open_footer(OTHER_MK, a[-FOOTER_SIZE:])
    with pytest.raises(ValueError):  # the caller asks for the version the footer names
        open_footer(MetadataKey(4, MK.key), a[-FOOTER_SIZE:])


def test_a_v3_reader_without_a_metadata_key_refuses_rather_than_skips_the_footer() -> None:
    with pytest.raises(IntegrityError):
        open_sealed(_seal3(b"x"), KEY)


def test_a_ranged_read_to_the_end_of_a_v3_stream_hands_over_the_footer() -> None:
    plaintext = bytes(range(100))
    stream = _seal3(plaintext, 16)
    header = parse_header(stream)
    span = span_for_range(90, 99, len(plaintext), 16)
    dec = StreamDecryptor(header, KEY, span.first_segment, span.last_segment)
    out = dec.feed(stream[span.ciphertext_start :])
    dec.finish()
    assert out[span.skip : span.skip + span.length] == plaintext[90:]
    assert dec.footer == stream[-FOOTER_SIZE:] and dec.trailer is None and not dec.unused
    assert open_footer(MK, dec.footer, header).trailer.md5 == hashlib.md5(plaintext).digest()
    middle = StreamDecryptor(header, KEY, 1, 2)  # not to the end: no footer
    middle.feed(stream[HEADER_SIZE + (16 + TAG_SIZE) : HEADER_SIZE + 3 * (16 + TAG_SIZE)])
    middle.finish()
    assert middle.footer is None


def test_a_v3_encryptor_needs_a_footer_and_only_v3_takes_one() -> None:
    with pytest.raises(ValueError):
        StreamEncryptor(KEY, WRAPPED, 1, 16, version=VERSION_3)
    with pytest.raises(ValueError):
        StreamEncryptor(KEY, WRAPPED, 1, 16, version=2, end=footer_sealer(MK))


def test_metadata_keys_are_derived_the_same_way_by_every_proxy() -> None:
    hmac = bytes(range(32))
    assert MetadataKey.derive(1, hmac) == MetadataKey.derive(1, hmac)
    assert MetadataKey.derive(1, hmac).key != MetadataKey.derive(1, bytes(32)).key
    with pytest.raises(ValueError):
        MetadataKey.derive(0, hmac)
