"""A presigned URL's ``X-Amz-Expires`` outside 1 to 604800 seconds (or not a number) is
refused with 400 AuthorizationQueryParametersError, as S3 refuses it, whether or not the proxy
checks signatures (it strips the workload's signing either way)."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest

from s3proxy.core.errors import AuthorizationQueryParametersError
from s3proxy.core.sigv4 import presigned_expiry
from tests.conftest import ProxyProcess

OUT_OF_RANGE = ["604801", "0", "-7", "ten", "٣"]  # the last: an Arabic-Indic digit


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_out_of_range_values(text: str) -> None:
    with pytest.raises(AuthorizationQueryParametersError):
        presigned_expiry(text)


def test_the_range() -> None:
    assert presigned_expiry("1") == 1
    assert presigned_expiry("604800") == 604800


def test_through_the_proxy(proxy: ProxyProcess, client: Any, bucket: str) -> None:
    client.put_object(Bucket=bucket, Key="p", Body=b"presigned")
    signer = proxy.client(signature_version="s3v4")
    url = signer.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=600
    )
    with urllib.request.urlopen(url, timeout=10) as ok:
        assert ok.read() == b"presigned"
    for value in OUT_OF_RANGE[:4]:
        bad = url.replace("X-Amz-Expires=600", f"X-Amz-Expires={value}")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(bad, timeout=10)
        assert caught.value.code == 400, value
        assert b"<Code>AuthorizationQueryParametersError</Code>" in caught.value.read()
