"""What the plaintext MD5 (for S3 ETags) costs the encryptor: one core, 64 MiB in 256 KiB
pieces, format v1 (no MD5) against v2 (MD5 while encrypting). Run: python bench/hashcost.py"""

from __future__ import annotations

import hashlib
import os
import time

from s3proxy.core.format import StreamEncryptor

SIZE = 64 * 1024 * 1024
PIECE = 256 * 1024


def encrypt_rate(data: bytes, version: int) -> float:
    best = float("inf")
    for _ in range(3):
        enc = StreamEncryptor(os.urandom(32), "vault:v1:x", len(data), 65536, version=version)
        view = memoryview(data)
        started = time.perf_counter()
        for i in range(0, len(data), PIECE):
            enc.feed(view[i : i + PIECE])
        enc.finish()
        best = min(best, time.perf_counter() - started)
    return len(data) / best / 2**20


def main() -> None:
    data = os.urandom(SIZE)
    started = time.perf_counter()
    hashlib.md5(data).digest()
    md5 = SIZE / (time.perf_counter() - started) / 2**20
    print(
        f"MD5 alone {md5:.0f} MiB/s; encrypt v1 (no MD5) {encrypt_rate(data, 1):.0f} MiB/s; "
        f"encrypt v2 (with MD5) {encrypt_rate(data, 2):.0f} MiB/s"
    )


if __name__ == "__main__":
    main()
