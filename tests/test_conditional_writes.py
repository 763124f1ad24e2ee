"""Conditional PutObject through the proxy to moto: ``If-Match`` / ``If-None-Match`` name the
plaintext ETag the client was given, quoted or bare (as ceph/s3-tests sends them), or ``*``.
The same against Ceph RGW, which compares the header with its ETag as text and takes any
``If-None-Match`` value, is in tests/test_rgw.py; the exact conditions the proxy sends upstream,
for bodies sent whole and streamed, in tests/test_inproc_writes.py."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError


def _put_with(client: Any, bucket: str, key: str, body: bytes, **headers: str) -> Any:
    def add(params: dict[str, Any], **_: Any) -> None:
        params["headers"].update(headers)

    client.meta.events.register_first("before-call.s3.PutObject", add)
    try:
        return client.put_object(Bucket=bucket, Key=key, Body=body)
    finally:
        client.meta.events.unregister("before-call.s3.PutObject", add)


def _refused(client: Any, bucket: str, key: str, **headers: str) -> tuple[int, str]:
    with pytest.raises(ClientError) as caught:
        _put_with(client, bucket, key, b"refused", **headers)
    error = caught.value.response
    return error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]


def _body(client: Any, bucket: str, key: str) -> bytes:
    return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_conditional_puts(client: Any, bucket: str) -> None:
    body = b"\x03" * 3
    etag = client.put_object(Bucket=bucket, Key="c", Body=body)["ETag"]
    for value in (etag, etag.strip('"'), f"W/{etag}", "*"):
        assert _refused(client, bucket, "c", **{"If-None-Match": value}) == (
            412,
            "PreconditionFailed",
        ), value
    for value in ('"0123456789abcdef0123456789abcdef"', "ABCORZ"):
        assert _refused(client, bucket, "c", **{"If-Match": value}) == (412, "PreconditionFailed")
    assert _body(client, bucket, "c") == body
    for n, quoting in enumerate(("quoted", "bare", "*")):
        value = {"quoted": etag, "bare": etag.strip('"'), "*": "*"}[quoting]
        new = body + bytes([n])
        etag = _put_with(client, bucket, "c", new, **{"If-Match": value})["ETag"]
        assert _body(client, bucket, "c") == new
    _put_with(client, bucket, "c", b"other", **{"If-None-Match": "ABCORZ"})
    assert _body(client, bucket, "c") == b"other"
    assert _refused(client, bucket, "absent", **{"If-Match": "*"})[0] in (404, 412)
    _put_with(client, bucket, "absent", b"new", **{"If-None-Match": "*"})
    assert _body(client, bucket, "absent") == b"new"
