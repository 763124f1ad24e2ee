"""Prints the test vectors of a format version (tests/vectors/format-v<N>.json) from fixed
inputs.

The committed JSON is the reference: once a format version is released its vectors never change,
and tests check that this release still writes and reads them byte for byte. Run this only to
add vectors for a new format version:  python tests/vectors/generate.py 3 > new.json
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import zlib

from s3proxy.core.footer import MetadataKey, footer_sealer
from s3proxy.core.format import (
    StreamEncryptor,
    derive_stream_key,
    name_binding,
    parse_header,
)
from s3proxy.core.layout import Layout
from s3proxy.core.manifest import manifest_value
from s3proxy.core.wholeobject import WholeObject, seal_whole, stream_digest

DATA_KEY = bytes(range(32))
SALT = bytes(range(0xA0, 0xB0))
NONCE_PREFIX = bytes(range(0xB0, 0xB7))
WRAPPED = (
    "vault:v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7"
)
WRAPPED_V12 = WRAPPED.replace("vault:v1:", "vault:v12:")
# v3: the metadata key of transit key version 7, from an HMAC of bytes 40..5f; footer salt c0..cf
METADATA_HMAC = bytes(range(0x40, 0x60))
METADATA_KEY = MetadataKey.derive(7, METADATA_HMAC)
FOOTER_SALT = bytes(range(0xC0, 0xD0))
# v3 manifests: the record salt d0..df
RECORD_SALT = bytes(range(0xD0, 0xE0))


def vector(
    version: int,
    name: str,
    plaintext: bytes,
    segment_size: int,
    wrapped: str = WRAPPED,
    checksum: tuple[str, bytes] | None = None,
    bound_to: tuple[str, str] | None = None,
    whole_object: bool = False,
    manifest_part: bool = False,
) -> dict[str, object]:
    binding = name_binding(*bound_to) if bound_to else None
    out: dict[str, object] = {
        "name": name,
        "version": version,
        "data_key": DATA_KEY.hex(),
        "wrapped_key": wrapped,
        "salt": SALT.hex(),
        "nonce_prefix": NONCE_PREFIX.hex(),
        "segment_size": segment_size,
        "plaintext": plaintext.hex(),
    }
    enc = StreamEncryptor(
        DATA_KEY,
        wrapped,
        len(plaintext),
        segment_size,
        salt=SALT,
        nonce_prefix=NONCE_PREFIX,
        version=version,
        binding=binding,
        whole_object=whole_object,
        manifest_part=manifest_part,
        end=footer_sealer(METADATA_KEY, FOOTER_SALT) if version >= 3 else None,
    )
    body = enc.feed(plaintext)
    tail = enc.finish(*checksum) if checksum else enc.finish()
    stream = enc.header + body + tail
    out["stream_key"] = derive_stream_key(DATA_KEY, parse_header(stream)).hex()
    if version >= 3:
        out["metadata_key_version"] = METADATA_KEY.version
        out["metadata_key_hmac"] = METADATA_HMAC.hex()
        out["metadata_key"] = METADATA_KEY.key.hex()
        out["footer_salt"] = FOOTER_SALT.hex()
    if version >= 2:
        out["md5"] = hashlib.md5(plaintext).hexdigest()
        if checksum:
            out["checksum_algorithm"], out["checksum"] = checksum[0], checksum[1].hex()
        if bound_to:
            out["bucket"], out["key"] = bound_to
        if whole_object:
            out["whole_object"] = True
        if manifest_part:
            out["manifest_part"] = True
    out["stream"] = stream.hex()
    return out


def vectors(version: int) -> list[dict[str, object]]:
    found = [
        vector(version, "empty", b"", 65536),
        vector(version, "hello", b"hello, world", 65536),
        vector(version, "two full segments", bytes(i % 251 for i in range(64)), 32),
        vector(version, "partial last segment", bytes(i % 251 for i in range(100)), 32),
        vector(version, "key version 12", b"rotated", 16, WRAPPED_V12),
    ]
    if version >= 2:
        crc32 = zlib.crc32(b"hello, world").to_bytes(4, "big")
        sha256 = hashlib.sha256(b"hello, world").digest()
        found += [
            vector(version, "with crc32", b"hello, world", 65536, checksum=("crc32", crc32)),
            vector(version, "with sha256", b"hello, world", 8, checksum=("sha256", sha256)),
            vector(version, "bound to its name", b"hello, world", 65536, bound_to=("b", "k/1")),
            vector(version, "whole object", b"hello, world", 65536, whole_object=True),
            vector(version, "manifest part 1", b"first part", 16, manifest_part=True),
            vector(version, "manifest part 2", b"and the second", 16, manifest_part=True),
        ]
    return found


def manifests(found: list[dict[str, object]]) -> list[dict[str, object]]:
    """The manifest of the object made of the two manifest-part vectors, in that order."""
    parts = [v for v in found if v.get("manifest_part")]
    streams = [bytes.fromhex(str(v["stream"])) for v in parts]
    layout = Layout.from_headers([parse_header(s) for s in streams])
    return [
        {
            "name": "two parts",
            "streams": [v["name"] for v in parts],
            "first_data_key": DATA_KEY.hex(),
            "manifest": manifest_value(DATA_KEY, layout),
        }
    ]


def _facts_json(facts: WholeObject) -> dict[str, object]:
    return {
        "stream_digest": facts.stream_digest.hex(),
        "plaintext_size": facts.plaintext_size,
        "md5_of_md5s": facts.md5_of_md5s.hex(),
        "parts": facts.parts,
        "part_size": facts.part_size,
        "last_part_size": facts.last_part_size,
        "checksum_algorithm": facts.checksum_algorithm,
        "checksum_type": facts.checksum_type,
        "checksum": facts.checksum.hex(),
        "stored_size": facts.stored_size,
        "last_salt": facts.last_salt.hex(),
    }


def manifests_v3(found: list[dict[str, object]]) -> list[dict[str, object]]:
    """The v3 manifest (a sealed record of the whole object) of the object made of the two
    manifest-part vectors, without a checksum, and with a FULL_OBJECT CRC64NVME one."""
    parts = [v for v in found if v.get("manifest_part")]
    streams = [bytes.fromhex(str(v["stream"])) for v in parts]
    layout = Layout.from_headers([parse_header(s) for s in streams])
    md5s = b"".join(bytes.fromhex(str(v["md5"])) for v in parts)
    plain = WholeObject(
        stream_digest(layout),
        layout.plaintext_length,
        hashlib.md5(md5s).digest(),
        len(streams),
        layout.streams[0].plaintext_length,  # (two parts: all but the last share a size)
        layout.streams[-1].plaintext_length,
        None,
        None,
        b"",
        layout.stored_length,
        layout.streams[-1].header.salt,
    )
    crc = dataclasses.replace(
        plain,
        checksum_algorithm="crc64nvme",
        checksum_type="FULL_OBJECT",
        checksum=bytes(range(0xE0, 0xE8)),
    )
    return [
        {
            "name": name,
            "streams": [v["name"] for v in parts],
            "metadata_key_version": METADATA_KEY.version,
            "metadata_key_hmac": METADATA_HMAC.hex(),
            "metadata_key": METADATA_KEY.key.hex(),
            "record_salt": RECORD_SALT.hex(),
            "facts": _facts_json(facts),
            "manifest": seal_whole(METADATA_KEY, facts, RECORD_SALT),
        }
        for name, facts in (("two parts", plain), ("two parts with a checksum", crc))
    ]


def main() -> None:
    version = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    found = vectors(version)
    doc: dict[str, object] = {"format": f"s3proxy at-rest format v{version}", "vectors": found}
    if version == 2:
        doc["manifests"] = manifests(found)
    if version == 3:
        doc["manifests"] = manifests_v3(found)
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
