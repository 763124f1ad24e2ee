"""Prints the v1 test vectors (tests/vectors/format-v1.json) from fixed inputs.

The committed JSON is the reference: once a format version is released its vectors never change,
and tests check that this release still writes and reads them byte for byte. Run this only to
add vectors for a new format version:  python tests/vectors/generate.py > new.json
"""

from __future__ import annotations

import json

from s3proxy.core.format import Header, derive_stream_key, seal

DATA_KEY = bytes(range(32))
SALT = bytes(range(0xA0, 0xB0))
NONCE_PREFIX = bytes(range(0xB0, 0xB7))
WRAPPED = (
    "vault:v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7"
)
WRAPPED_V12 = WRAPPED.replace("vault:v1:", "vault:v12:")


def vector(
    name: str, plaintext: bytes, segment_size: int, wrapped: str = WRAPPED
) -> dict[str, object]:
    stream = seal(DATA_KEY, wrapped, plaintext, segment_size, salt=SALT, nonce_prefix=NONCE_PREFIX)
    header = Header(segment_size, len(plaintext), SALT, NONCE_PREFIX, wrapped)
    return {
        "name": name,
        "data_key": DATA_KEY.hex(),
        "wrapped_key": wrapped,
        "salt": SALT.hex(),
        "nonce_prefix": NONCE_PREFIX.hex(),
        "segment_size": segment_size,
        "plaintext": plaintext.hex(),
        "stream_key": derive_stream_key(DATA_KEY, header).hex(),
        "stream": stream.hex(),
    }


def main() -> None:
    vectors = [
        vector("empty", b"", 65536),
        vector("hello", b"hello, world", 65536),
        vector("two full segments", bytes(i % 251 for i in range(64)), 32),
        vector("partial last segment", bytes(i % 251 for i in range(100)), 32),
        vector("key version 12", b"rotated", 16, WRAPPED_V12),
    ]
    print(json.dumps({"format": "s3proxy at-rest format v1", "vectors": vectors}, indent=1))


if __name__ == "__main__":
    main()
