"""The signed aws-chunked framing the proxy sends to stores that verify chunk signatures
(core/chunksigning.py), checked by an independent reader: the proxy's own aws-chunked decoder
with the chunk-signature checker its client authentication uses, signing with botocore."""

from __future__ import annotations

import hashlib

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from s3proxy.core.awschunked import AwsChunkedDecoder
from s3proxy.core.chunksigning import SignedChunkFramer, encoded_length
from s3proxy.core.errors import SignatureDoesNotMatch
from s3proxy.core.sigv4 import ChunkSignatures, ClientSignature

TIMESTAMP = "20261204T120000Z"
SEED = "f" * 64


def _signer(secret: str = "secret") -> object:
    auth = S3SigV4Auth(Credentials("AKID", secret), "s3", "eu-central-1")
    request = AWSRequest()
    request.context["timestamp"] = TIMESTAMP
    return lambda text: str(auth.signature(text, request))


def _signature() -> ClientSignature:
    return ClientSignature(
        access_key="AKID",
        date=TIMESTAMP[:8],
        region="eu-central-1",
        service="s3",
        signed_headers=("host",),
        signature=SEED,
        timestamp=TIMESTAMP,
        presigned=False,
        expires=None,
        payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        query=(),
    )


def _framed(payload: bytes, chunk: int, split: int, secret: str = "secret") -> bytes:
    framer = SignedChunkFramer(len(payload), chunk)
    scope = f"{TIMESTAMP[:8]}/eu-central-1/s3/aws4_request"
    framer.seed(SEED, TIMESTAMP, scope, _signer(secret))  # type: ignore[arg-type]
    out = b"".join(
        bytes(framer.frame(payload[i : i + split])) for i in range(0, len(payload), split)
    )
    out += framer.finish()
    assert len(out) == framer.length == encoded_length(len(payload), chunk)
    return out


def _decoded(body: bytes, length: int) -> bytes:
    checker = ChunkSignatures(_signature(), _signer())  # type: ignore[arg-type]
    decoder = AwsChunkedDecoder(length, checker)
    out = decoder.feed(body)
    decoder.finish()
    return bytes(out)


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(max_size=5000), chunk=st.integers(8, 900), split=st.integers(1, 1200))
def test_frames_any_body_in_any_pieces(payload: bytes, chunk: int, split: int) -> None:
    assert _decoded(_framed(payload, chunk, split), len(payload)) == payload


def test_a_real_sized_body() -> None:
    payload = hashlib.sha256(b"x").digest() * 10_000  # 320,000 bytes: 4 full chunks and a rest
    assert _decoded(_framed(payload, 64 * 1024, 256 * 1024), len(payload)) == payload


def test_another_key_signs_other_chunks() -> None:
    body = _framed(b"payload" * 100, 64, 100, secret="another")
    with pytest.raises(SignatureDoesNotMatch):
        _decoded(body, 700)


def test_the_body_must_have_its_announced_length() -> None:
    framer = SignedChunkFramer(10)
    framer.seed(SEED, TIMESTAMP, "scope", lambda text: "0" * 64)
    framer.frame(b"12345")
    with pytest.raises(ValueError, match="ended"):
        framer.finish()
    with pytest.raises(ValueError, match="more body"):
        framer.frame(b"1234567")


@settings(max_examples=50, deadline=None)
@given(
    secret=st.text(min_size=1, max_size=40),
    region=st.sampled_from(["us-east-1", "auto", "eu-central-1"]),
    text=st.text(max_size=300),
)
def test_the_upstreams_chunk_signer_equals_botocores(secret: str, region: str, text: str) -> None:
    """The signing key derived once per request signs as botocore's ``signature`` does."""
    from botocore.credentials import ReadOnlyCredentials

    from s3proxy.upstream.client import Signing

    timestamp = "20261204T211500Z"
    headers = {"Authorization": "AWS4-HMAC-SHA256 Signature=" + "a" * 64, "X-Amz-Date": timestamp}
    signing = Signing.of(headers, ReadOnlyCredentials("AK", secret, None), region)
    auth = S3SigV4Auth(Credentials("AK", secret), "s3", region)
    request = AWSRequest()
    request.context["timestamp"] = timestamp
    assert signing.sign(text) == auth.signature(text, request)
    assert signing.scope == f"20261204/{region}/s3/aws4_request"
