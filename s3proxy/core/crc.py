"""Combining CRCs: the CRC of ``a ‖ b`` from the CRCs of ``a`` and ``b`` and the length of
``b``, for the reflected CRCs S3 uses (CRC32, CRC32C, CRC64NVME). Pure integers.

This is zlib's ``crc32_combine`` (GF(2) matrices for "append n zero bytes"), generalised to
any width and polynomial; S3 needs it for multipart objects whose checksum type is
FULL_OBJECT, where the object's CRC is that of its whole plaintext.
"""

from __future__ import annotations

from functools import lru_cache

# Reflected polynomials and widths.
POLYNOMIALS = {
    "crc32": (0xEDB88320, 32),
    "crc32c": (0x82F63B78, 32),
    "crc64nvme": (0x9A6C9329AC4BC9B5, 64),
}

Matrix = tuple[int, ...]


def _times(matrix: Matrix, vector: int) -> int:
    out, index = 0, 0
    while vector:
        if vector & 1:
            out ^= matrix[index]
        vector >>= 1
        index += 1
    return out


def _product(a: Matrix, b: Matrix) -> Matrix:
    """The operator "apply b, then a"."""
    return tuple(_times(a, column) for column in b)


@lru_cache(maxsize=64)
def _zeros(length: int, polynomial: int, width: int) -> Matrix:
    """The operator that appends ``length`` zero bytes to a CRC register."""
    one_bit = (polynomial, *(1 << n for n in range(width - 1)))
    power = _product(one_bit, one_bit)  # 2 zero bits
    power = _product(power, power)  # 4
    power = _product(power, power)  # 8 bits: one zero byte
    result: Matrix = tuple(1 << n for n in range(width))  # identity
    while length:
        if length & 1:
            result = _product(power, result)
        length >>= 1
        if length:
            power = _product(power, power)
    return result


def combine(algorithm: str, crc_a: int, crc_b: int, length_b: int) -> int:
    """The CRC of ``a ‖ b`` (``algorithm`` as S3 names it, lower case)."""
    polynomial, width = POLYNOMIALS[algorithm]
    if length_b == 0:
        return crc_a
    return _times(_zeros(length_b, polynomial, width), crc_a) ^ crc_b
