"""aws-chunked uploads through the proxy: the AWS SDK for JavaScript v3 (a real client that
sends them over http), and hand-framed bodies for the variants and failures no client here
produces on demand (signed chunks, ECDSA signatures, a wrong trailing checksum)."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from s3proxy.core.sizes import DEFAULT_SEGMENT_SIZE, ciphertext_length
from s3proxy.devstack import clean_env
from tests.conftest import ProxyProcess
from tests.test_awschunked import ECDSA_SIG, SIG, encode

JS = Path(__file__).parent / "js"


@pytest.mark.parametrize("size", [0, 1000, 3 * DEFAULT_SEGMENT_SIZE + 5, 5 * 1024 * 1024 + 1])
def test_js_sdk_streaming_upload(proxy: ProxyProcess, raw: Any, bucket: str, size: int) -> None:
    node = shutil.which("node")
    assert node, "node is needed for the JS SDK tests"
    result = subprocess.run(
        [node, str(JS / "s3client.mjs"), proxy.endpoint, bucket, "js-object", str(size)],
        env=clean_env(),
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == {"equal": True, "length": size}
    stored = raw.get_object(Bucket=bucket, Key="js-object")["Body"].read()
    assert len(stored) == ciphertext_length(size, DEFAULT_SEGMENT_SIZE, 3)


def _put(proxy: ProxyProcess, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        conn.request("PUT", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


VARIANTS = {
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD": (SIG, False),
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER": (SIG, True),
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER": (None, True),
    "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD": (ECDSA_SIG, False),
    "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER": (ECDSA_SIG, True),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_aws_chunked_variant_round_trips(
    proxy: ProxyProcess, client: Any, bucket: str, variant: str
) -> None:
    payload = bytes(i % 253 for i in range(200_000))
    signature, trailer = VARIANTS[variant]
    trailers = {"x-amz-checksum-crc32": _crc32(payload)} if trailer else None
    body = encode(payload, 65536, signature=signature, trailers=trailers)
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-content-sha256": variant,
        "x-amz-decoded-content-length": str(len(payload)),
        "Content-Length": str(len(body)),
    }
    if trailer:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32"
    status, _ = _put(proxy, f"/{bucket}/chunked", headers, body)
    assert status == 200
    got = client.get_object(Bucket=bucket, Key="chunked")
    assert got["Body"].read() == payload
    assert got.get("ContentEncoding") in (None, "")


def test_wrong_trailing_checksum_is_rejected_and_stores_nothing(
    proxy: ProxyProcess, raw: Any, bucket: str
) -> None:
    payload = b"data whose trailer lies" * 1000
    body = encode(payload, 8192, signature=None, trailers={"x-amz-checksum-crc32": _crc32(b"x")})
    status, reply = _put(
        proxy,
        f"/{bucket}/bad",
        {
            "Content-Encoding": "aws-chunked",
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "x-amz-decoded-content-length": str(len(payload)),
            "x-amz-trailer": "x-amz-checksum-crc32",
            "Content-Length": str(len(body)),
        },
        body,
    )
    assert status == 400 and b"<Code>BadDigest</Code>" in reply
    assert raw.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"5\r\nhello\r\nzz\r\n",  # bad chunk size
        b"5\r\nhello\r\n",  # no final chunk
        b"3\r\nhello\r\n0\r\n\r\n",  # chunk longer than declared
    ],
)
def test_malformed_framing_gets_400_and_stores_nothing(
    proxy: ProxyProcess, raw: Any, bucket: str, body: bytes
) -> None:
    status, reply = _put(
        proxy,
        f"/{bucket}/malformed",
        {
            "Content-Encoding": "aws-chunked",
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "x-amz-decoded-content-length": "5",
            "Content-Length": str(len(body)),
        },
        body,
    )
    assert status == 400, reply
    assert b"<Error>" in reply
    assert raw.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_gzip_inside_aws_chunked_stays_gzip(client: Any, proxy: ProxyProcess, bucket: str) -> None:
    payload = b"\x1f\x8b pretend gzip bytes"
    body = encode(payload, 7, signature=None)
    status, _ = _put(
        proxy,
        f"/{bucket}/gz",
        {
            "Content-Encoding": "aws-chunked,gzip",
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "x-amz-decoded-content-length": str(len(payload)),
            "Content-Length": str(len(body)),
        },
        body,
    )
    assert status == 200
    got = client.get_object(Bucket=bucket, Key="gz")
    assert got["ContentEncoding"] == "gzip" and got["Body"].read() == payload
