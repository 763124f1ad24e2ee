"""The forms an upload can take toward the store so that the store itself refuses bytes damaged
on the way (docs/design.md, Checksums toward the store), and their framing.

- ``TRAILER``: aws-chunked ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` with a trailing
  ``x-amz-checksum-<algorithm>`` (AWS S3, MinIO, LocalStack, moto); a body sent whole carries
  the checksum as a header.
- ``SIGNED``: aws-chunked ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``, every chunk signed (Ceph RGW
  before Reef refuses the trailer payload but verifies chunk signatures); a body sent whole is
  signed with its SHA-256, as always.
- ``PLAIN``: ``UNSIGNED-PAYLOAD`` for a stream (GCS takes neither aws-chunked form); a body sent
  whole carries ``Content-MD5``.

Every body sent with a checksum also names its algorithm in ``x-amz-sdk-checksum-algorithm``, as
the SDKs do, which S3 requires of uploads with Object Lock retention.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from s3proxy.core.checksums import new_hasher
from s3proxy.core.chunksigning import PAYLOAD as SIGNED_PAYLOAD
from s3proxy.core.chunksigning import SignedChunkFramer
from s3proxy.core.headers import Headers
from s3proxy.core.sigv4 import UNSIGNED_PAYLOAD
from s3proxy.core.trailing import PAYLOAD as TRAILER_PAYLOAD
from s3proxy.core.trailing import UPSTREAM_CHECKSUMS, TrailingChecksumFramer
from s3proxy.upstream.client import Signing

Chunk = bytes | bytearray | memoryview


class Form(enum.Enum):
    TRAILER = "trailer checksum"
    SIGNED = "signed chunks"
    PLAIN = "no checksum"


@dataclass(frozen=True)
class Choice:
    form: Form
    algorithm: str = "crc32"  # of the trailer or header checksum (TRAILER)

    def describe(self) -> str:
        if self.form is Form.TRAILER:
            return f"{self.form.value} ({self.algorithm})"
        return str(self.form.value)


def fixed_choice(setting: str) -> Choice | None:
    """The form an explicit ``S3PROXY_UPSTREAM_CHECKSUM`` names; ``None`` for ``auto``."""
    if setting in UPSTREAM_CHECKSUMS:
        return Choice(Form.TRAILER, setting)
    if setting == "signed":
        return Choice(Form.SIGNED)
    if setting == "off":
        return Choice(Form.PLAIN)
    if setting == "auto":
        return None
    raise ValueError(f"unknown upstream checksum setting {setting!r}")


class Framing(Protocol):
    length: int

    def frame(self, data: Chunk) -> Chunk: ...

    def finish(self) -> bytes: ...


class _Unframed:
    def __init__(self, total: int) -> None:
        self.length = total

    def frame(self, data: Chunk) -> Chunk:
        return data

    def finish(self) -> bytes:
        return b""


@dataclass
class StreamForm:
    """How one streamed body goes upstream: its framing, the headers and payload hash that
    announce it, and what learns the request's signature (signed chunks)."""

    framing: Framing
    headers: Headers
    payload: str
    on_signed: Callable[[Signing], None] | None = None


def _aws_chunked(headers: Headers, stored: int, extra: Iterable[tuple[str, str]]) -> Headers:
    """The headers with ``aws-chunked`` first in ``Content-Encoding`` (S3 removes it again)."""
    encoding = headers.get("Content-Encoding")
    value = "aws-chunked" + (f",{encoding}" if encoding else "")
    return headers.without("Content-Encoding").plus(
        [("Content-Encoding", value), ("x-amz-decoded-content-length", str(stored)), *extra]
    )


def stream_form(choice: Choice, headers: Iterable[tuple[str, str]], total: int) -> StreamForm:
    """The form of a ``total``-byte body streamed upstream."""
    fields = Headers(headers)
    if choice.form is Form.TRAILER:
        trailing = TrailingChecksumFramer(choice.algorithm, total)
        return StreamForm(trailing, _aws_chunked(fields, total, trailing.headers), TRAILER_PAYLOAD)
    if choice.form is Form.SIGNED:
        signed = SignedChunkFramer(total)

        def seed(signing: Signing) -> None:
            signed.seed(signing.signature, signing.timestamp, signing.scope, signing.sign)

        return StreamForm(signed, _aws_chunked(fields, total, ()), SIGNED_PAYLOAD, seed)
    return StreamForm(_Unframed(total), fields, UNSIGNED_PAYLOAD)


def whole_headers(choice: Choice, headers: Iterable[tuple[str, str]], body: bytes) -> Headers:
    """The headers of a body sent whole (signed with its SHA-256), with its checksum."""
    fields = Headers(headers)
    if choice.form is Form.TRAILER:
        hasher = new_hasher(choice.algorithm)
        hasher.update(body)
        value = base64.b64encode(hasher.digest()).decode()
        return fields.plus(
            [
                (f"x-amz-checksum-{choice.algorithm}", value),
                ("x-amz-sdk-checksum-algorithm", choice.algorithm.upper()),
            ]
        )
    if choice.form is Form.PLAIN:
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        return fields.plus([("Content-MD5", md5)])
    return fields
