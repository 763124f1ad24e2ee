"""One core's speed of each primitive the proxy runs over object bytes, as the proxy calls it:
AES-256-GCM (cryptography, one call per 64 KiB segment and one per 4 MiB), MD5 (hashlib, for the
plaintext ETag) and the upstream checksums (zlib's CRC32; awscrt's CRC32C and CRC64NVME).
docs/performance.md, Where it stands against the targets.
Run: python bench/primitives.py [--mib 256]"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
import zlib
from collections.abc import Callable

from awscrt import checksums
from cryptography.hazmat.backends.openssl import backend
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEGMENT = 64 * 1024
LARGE = 4 * 1024 * 1024


def rate(total: int, piece: int, step: Callable[[bytes], object]) -> float:
    """MB/s (10^6 bytes) over ``total`` bytes in ``piece``-byte calls, best of three, CPU time."""
    data = os.urandom(piece)
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(total // piece):
            step(data)
        best = min(best, time.process_time() - started)
    return total / best / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="bytes per measurement, in MiB")
    total = parser.parse_args().mib * 2**20
    aead, nonce = AESGCM(os.urandom(32)), os.urandom(12)
    out_segment, out_large = bytearray(SEGMENT + 16), bytearray(LARGE + 16)
    md5 = hashlib.md5()
    crc = [0]

    def crc_step(fn: Callable[[bytes, int], int]) -> Callable[[bytes], object]:
        def step(data: bytes) -> object:
            crc[0] = fn(data, crc[0])
            return None

        return step

    figures = {
        "AES-256-GCM, 64 KiB per call": rate(
            total, SEGMENT, lambda d: aead.encrypt_into(nonce, d, None, out_segment)
        ),
        "AES-256-GCM, 4 MiB per call": rate(
            total, LARGE, lambda d: aead.encrypt_into(nonce, d, None, out_large)
        ),
        "MD5 (hashlib)": rate(total, SEGMENT, md5.update),
        "CRC32 (zlib)": rate(total, SEGMENT, crc_step(zlib.crc32)),
        "CRC32C (awscrt)": rate(total, SEGMENT, crc_step(checksums.crc32c)),
        "CRC64NVME (awscrt)": rate(total, SEGMENT, crc_step(checksums.crc64nvme)),
    }
    print(f"one core, {backend.openssl_version_text()} (cryptography's own)")
    for name, value in figures.items():
        print(f"{name}: {value:,.0f} MB/s")


if __name__ == "__main__":
    main()
