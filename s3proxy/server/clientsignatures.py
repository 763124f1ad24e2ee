"""The workload's SigV4 signature recomputed with botocore's S3 signer (client authentication,
s3proxy.server.clientauth; imported only where clients are authenticated)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

from s3proxy.core.sigv4 import ClientSignature


class _Verifier(S3SigV4Auth):  # type: ignore[misc]
    """botocore's S3 signer, fed the headers and payload hash the client signed, as sent."""

    def __init__(self, secret: str, sig: ClientSignature, headers: Any) -> None:
        super().__init__(Credentials(sig.access_key, secret), sig.service, sig.region)
        self._sig = sig
        self._headers = headers

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        chosen = HTTPHeaders()
        for name in self._sig.signed_headers:
            for value in self._headers.getall(name, ()):
                chosen[name] = value
        return chosen

    def payload(self, request: AWSRequest) -> str:
        return self._sig.payload_hash


def expected(
    secret: str, sig: ClientSignature, request: web.Request, url: str
) -> tuple[str, Callable[[str], str]]:
    """The signature the request must carry, and the function that signs its chunks."""
    verifier = _Verifier(secret, sig, request.headers)
    aws_request = AWSRequest(method=request.method, url=url)
    aws_request.params = list(sig.query)
    aws_request.context["timestamp"] = sig.timestamp
    for name in sig.signed_headers:
        if name == "x-amz-content-sha256" and name in request.headers:
            aws_request.headers["X-Amz-Content-SHA256"] = request.headers[name]
    canonical = verifier.canonical_request(aws_request)
    signature = verifier.signature(verifier.string_to_sign(aws_request, canonical), aws_request)
    return str(signature), lambda text: str(verifier.signature(text, aws_request))
