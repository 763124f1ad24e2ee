"""The manifest of a multipart object: which streams, in which order, make the whole object.
Pure: a data key and a layout in, a tag value out (docs/format.md, Multipart manifest).

Each part stream authenticates only itself, so without a manifest the store could drop,
reorder or duplicate whole parts. At CompleteMultipartUpload the proxy knows the part list, and
records ``HMAC-SHA256(K_m, "s3proxy manifest v2" ‖ be32(N) ‖ salt_1 ‖ be64(P_1) ‖ … )``, keyed by
a key derived from the first stream's data key, as an object tag. A stream flagged as a manifest
part (format v2, flag bit 1) is only read as part of an object whose manifest verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from s3proxy.core.errors import IntegrityError
from s3proxy.core.layout import Layout

MANIFEST_TAG = "s3proxy-manifest"
_KEY_LABEL = b"s3proxy manifest key v2"
_MAC_LABEL = b"s3proxy manifest v2"


def needs_manifest(layout: Layout) -> bool:
    """Whether any stream says it belongs to an object with a manifest."""
    return any(s.header.manifest_part for s in layout.streams)


def manifest_value(first_data_key: bytes, layout: Layout) -> str:
    """The tag value recording this exact sequence of streams (43 characters)."""
    first = layout.streams[0].header
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=first.salt,
        info=_KEY_LABEL + first.authenticated_bytes(),
    ).derive(first_data_key)
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(_MAC_LABEL + struct.pack(">I", len(layout.streams)))
    for stream in layout.streams:
        mac.update(stream.header.salt + struct.pack(">Q", stream.plaintext_length))
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def check_manifest(first_data_key: bytes, layout: Layout, found: str | None) -> None:
    """Raise unless ``found`` is the manifest of exactly these streams."""
    if found is None:
        raise IntegrityError("The multipart object has no manifest (its parts are not proven).")
    if not hmac.compare_digest(found.encode(), manifest_value(first_data_key, layout).encode()):
        raise IntegrityError("The multipart object's parts do not match its manifest.")
