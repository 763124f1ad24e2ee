"""CompleteMultipartUpload through the proxy to a real Ceph RADOS Gateway, which answers Complete
with an empty ``<ETag>`` and, for a Complete repeated after it succeeded (s3-tests
``test_multipart_upload_small`` does it), demands the part list it completed (else 500 "This
multipart completion is already in progress").

The ``rgw`` fixture is the RGW tier's (tests/rgw.py); the proxies run with default settings.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3proxy.devstack import S3Server, Vault
from tests.conftest import ProxyProcess, start_proxy

MiB = 1024 * 1024
ONE_WORKER = {"S3PROXY_WORKERS": "1"}

pytest_plugins = ["tests.rgw"]
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def rgw_proxies(workdir: Path, vault: Vault, rgw: S3Server) -> Iterator[list[ProxyProcess]]:
    """Two proxy processes in front of RGW, sharing nothing."""
    started = [start_proxy(workdir, vault, rgw, ONE_WORKER) for _ in range(2)]
    yield started
    for p in started:
        p.stop()


def _upload(client: Any, bucket: str, key: str, parts: list[bytes]) -> tuple[str, list[Any]]:
    """Parts uploaded, listed as s3-tests lists them (ETags without quotes)."""
    uid = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    listed = [
        {
            "PartNumber": n,
            "ETag": client.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n, Body=p)[
                "ETag"
            ].strip('"'),
        }
        for n, p in enumerate(parts, 1)
    ]
    return uid, listed


def test_complete_through_the_proxy_to_rgw_repeated_and_read_elsewhere(
    rgw: S3Server, rgw_proxies: list[ProxyProcess]
) -> None:
    bucket = f"r-{uuid.uuid4().hex[:12]}"
    rgw.client().create_bucket(Bucket=bucket)
    a, b = (p.client(retries={"total_max_attempts": 1}) for p in rgw_proxies)
    for parts in ([os.urandom(1)], [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(100)]):
        key = f"mp-{len(parts)}"
        uid, listed = _upload(a, bucket, key, parts)
        done = {"Bucket": bucket, "Key": key, "UploadId": uid, "MultipartUpload": {"Parts": listed}}
        first = a.complete_multipart_upload(**done)
        assert first["ETag"].endswith(f'-{len(parts)}"'), first  # the plaintext's, not empty
        assert a.complete_multipart_upload(**done)["ETag"] == first["ETag"]  # as S3 repeats it
        assert b.complete_multipart_upload(**done)["ETag"] == first["ETag"]
        got = b.get_object(Bucket=bucket, Key=key)
        assert got["ETag"] == first["ETag"]
        assert got["Body"].read() == b"".join(parts)


def test_a_wrong_part_etag_is_invalid_part_on_rgw(
    rgw: S3Server, rgw_proxies: list[ProxyProcess]
) -> None:
    bucket = f"r-{uuid.uuid4().hex[:12]}"
    rgw.client().create_bucket(Bucket=bucket)
    a, b = (p.client(retries={"total_max_attempts": 1}) for p in rgw_proxies)
    wrong = "ffffffffffffffffffffffffffffffff"
    for via, key in ((a, "sealed-here"), (b, "sealed-elsewhere")):
        uid, listed = _upload(a, bucket, key, [os.urandom(5 * MiB), os.urandom(10)])
        listed[1]["ETag"] = wrong
        with pytest.raises(ClientError) as err:
            via.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": listed}
            )
        assert err.value.response["Error"]["Code"] == "InvalidPart"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
