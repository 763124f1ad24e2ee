"""CRC combination against the CRCs of real concatenations."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from s3proxy.core.checksums import new_hasher
from s3proxy.core.crc import combine


def _crc(algorithm: str, data: bytes) -> int:
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return int.from_bytes(hasher.digest(), "big")


@settings(max_examples=300, deadline=None)
@given(
    a=st.binary(max_size=300),
    b=st.binary(max_size=300),
    algorithm=st.sampled_from(["crc32", "crc32c", "crc64nvme"]),
)
def test_combined_crc_is_the_crc_of_the_concatenation(a: bytes, b: bytes, algorithm: str) -> None:
    assert combine(algorithm, _crc(algorithm, a), _crc(algorithm, b), len(b)) == _crc(
        algorithm, a + b
    )


def test_large_lengths_combine_too() -> None:
    a, b = b"x" * 1000, bytes(range(256)) * 4096  # 1 MiB
    for algorithm in ("crc32", "crc32c", "crc64nvme"):
        assert combine(algorithm, _crc(algorithm, a), _crc(algorithm, b), len(b)) == _crc(
            algorithm, a + b
        )
