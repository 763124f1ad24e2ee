"""ETags as S3 defines them, for the plaintext. Pure: digests in, ETag strings out.

S3 gives a PutObject or UploadPart the MD5 of its body, and a multipart object the MD5 of its
parts' binary MD5s followed by ``-N``. Each v2 stream records its plaintext MD5 in its trailer
(docs/format.md), and every part the proxy writes is one stream, so an object's plaintext ETag
follows from its streams' trailers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

_MD5_HEX = re.compile(r"[0-9a-f]{32}")


def quoted(value: str) -> str:
    return f'"{value}"'


def single_etag(md5: bytes) -> str:
    return quoted(md5.hex())


def multipart_etag(part_md5s: Sequence[bytes]) -> str:
    return quoted(f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}")


def object_etag(stream_md5s: Sequence[bytes | None], multipart: bool) -> str | None:
    """The plaintext ETag of an object whose streams recorded these MD5s (``None`` for a v1
    stream, which recorded none: then the object keeps its stored ETag)."""
    md5s = [m for m in stream_md5s if m is not None]
    if not md5s or len(md5s) != len(stream_md5s):
        return None
    if multipart:
        return multipart_etag(md5s)
    return single_etag(md5s[0]) if len(md5s) == 1 else None


def md5_of_etag(etag: str) -> bytes | None:
    """The MD5 a single-part ETag stands for (quotes optional), else ``None``."""
    text = etag.strip().strip('"').lower()
    return bytes.fromhex(text) if _MD5_HEX.fullmatch(text) else None


def same_etag(a: str, b: str) -> bool:
    """ETags compare without their quotes (S3 accepts both forms in conditions)."""
    return a.strip().strip('"') == b.strip().strip('"')
