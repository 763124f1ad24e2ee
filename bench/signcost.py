"""The cost of signing one upstream request, in µs: awscrt's C signer as the proxy called it
before (a signing config, credentials provider, HttpRequest and HttpHeaders built and the key
derived for every request) against s3proxy/upstream/signer.py (Python over the standard
library's C HMAC and SHA-256, the key cached), on the headers the proxy sends for a 4 KiB GET
and a 4 KiB PUT. docs/performance-history.md, Changes and what they bought.

    python bench/signcost.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable

from awscrt import auth as crt_auth
from awscrt import http as crt_http
from botocore.credentials import ReadOnlyCredentials

from s3proxy.upstream.signer import UNSIGNED_HEADERS, Signer

USER_AGENT = (
    "Boto3/1.44.18 md/Botocore#1.44.18 md/awscrt#0.38.1 ua/2.1 os/linux#6.18 md/arch#x86_64 "
    "lang/python#3.11.7 md/pyimpl#CPython m/N,b,Z,E,e cfg/retry-mode#standard Botocore/1.44.18"
)
GET = {
    "x-amz-checksum-mode": "ENABLED",
    "user-agent": USER_AGENT,
    "if-match": '"56593916fa62a4a27fce10edde9f626c"',
    "range": "bytes=0-4287",
    "host": "127.0.0.1:9000",
}
PUT = {
    "user-agent": USER_AGENT,
    "x-amz-meta-s3proxy-encryption": "v=3;seg=65536",
    "x-amz-checksum-crc32": "OhEZpA==",
    "x-amz-sdk-checksum-algorithm": "CRC32",
    "content-type": "application/octet-stream",
    "content-length": "4288",
    "host": "127.0.0.1:9000",
}
PAYLOAD = "15f726399d42dc3cd360f6b48c38cd44eae6fb80114cb10c22424a687d556b4a"
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
Sign = Callable[[str, str, dict[str, str], str, ReadOnlyCredentials], dict[str, str]]


class CrtSigner:
    """The signer s3proxy/upstream/client.py had: awscrt's, everything built per request."""

    def __init__(self, region: str, now: Callable[[], dt.datetime]) -> None:
        self._region, self._now = region, now
        self._provider: tuple[tuple[str, str, str | None], crt_auth.AwsCredentialsProvider] | None
        self._provider = None

    def sign(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        payload_hash: str,
        creds: ReadOnlyCredentials,
    ) -> dict[str, str]:
        key = (creds.access_key, creds.secret_key, creds.token)
        if self._provider is None or self._provider[0] != key:
            self._provider = (key, crt_auth.AwsCredentialsProvider.new_static(*key))
        config = crt_auth.AwsSigningConfig(
            algorithm=crt_auth.AwsSigningAlgorithm.V4,
            signature_type=crt_auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
            credentials_provider=self._provider[1],
            region=self._region,
            service="s3",
            date=self._now(),
            use_double_uri_encode=False,
            should_normalize_uri_path=False,
            signed_body_value=payload_hash,
            signed_body_header_type=crt_auth.AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256,
        )
        signed = [(k, v) for k, v in headers.items() if k.lower() not in UNSIGNED_HEADERS]
        request = crt_http.HttpRequest(method, path, crt_http.HttpHeaders(signed))
        crt_auth.aws_sign_request(request, config).result(10)
        out = dict(request.headers)
        if len(signed) < len(headers):
            out.update((k, v) for k, v in headers.items() if k.lower() in UNSIGNED_HEADERS)
        return out


def per_call(sign: Sign, request: tuple[str, str, dict[str, str], str], calls: int) -> float:
    """The best of five runs of ``calls`` signatures (after 1,000 not counted), in µs per
    signature."""
    creds = ReadOnlyCredentials("GK31c2f218a2e44f485b94239e", "secret/key+1", None)
    for _ in range(1000):
        sign(*request, creds)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            sign(*request, creds)
        best = min(best, time.perf_counter() - started)
    return best / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    now = lambda: dt.datetime.now(dt.UTC)  # noqa: E731
    requests = {
        "GET": ("GET", "/bench/small-enc", GET, EMPTY),
        "PUT": ("PUT", "/bench/sink/put-4k", PUT, PAYLOAD),
    }
    for name, request in requests.items():
        crt = per_call(CrtSigner("us-east-1", now).sign, request, args.calls)
        ours = per_call(Signer("us-east-1", now).sign, request, args.calls)
        print(f"{name} 4 KiB: awscrt {crt:.1f} µs; s3proxy/upstream/signer.py {ours:.1f} µs")


if __name__ == "__main__":
    main()
