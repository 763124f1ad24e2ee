"""The proxy in front of a real Ceph RADOS Gateway (tests/rgw.py) with default settings: the
store verifies SigV4, payload hashes, chunk signatures and Content-MD5, and refuses the trailer
payload, so uploads there go as signed aws-chunked (``S3PROXY_UPSTREAM_CHECKSUM=auto`` learns it).
Real clients: boto3, the AWS CLI, the AWS SDK for JavaScript, rclone and s3cmd."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from s3proxy.core.sizes import DEFAULT_SEGMENT_SIZE, ciphertext_length
from s3proxy.devstack import Vault
from tests.conftest import ProxyProcess, start_proxy

if TYPE_CHECKING:
    from tests.rgw import RGW

pytest_plugins = ["tests.rgw"]

MiB = 1024 * 1024
JS = Path(__file__).parent / "js"


@pytest.fixture(scope="module")
def rgw_proxy(workdir: Path, vault: Vault, rgw: RGW) -> Iterator[ProxyProcess]:
    """A proxy with default settings in front of RGW."""
    p = start_proxy(workdir, vault, rgw)
    yield p
    p.stop()


@pytest.fixture
def rgw_bucket(rgw: RGW) -> str:
    name = f"r-{uuid.uuid4().hex[:12]}"
    rgw.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def via(rgw_proxy: ProxyProcess) -> Any:
    return rgw_proxy.client()


def _data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def _stored(rgw: RGW, bucket: str, key: str) -> bytes:
    return bytes(rgw.client().get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.mark.parametrize("size", [0, 1000, 64 * 1024 + 1, 3 * MiB + 17])
def test_boto3_put_get(via: Any, rgw: RGW, rgw_bucket: str, size: int) -> None:
    data = _data(size, size)
    answer = via.put_object(Bucket=rgw_bucket, Key="k", Body=data)
    assert answer["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert via.get_object(Bucket=rgw_bucket, Key="k")["Body"].read() == data
    stored = _stored(rgw, rgw_bucket, "k")
    assert len(stored) == ciphertext_length(size, DEFAULT_SEGMENT_SIZE, 2)
    assert size < 64 or data[:64] not in stored


def test_the_proxy_logs_the_form_it_learned(
    via: Any, rgw_proxy: ProxyProcess, rgw_bucket: str
) -> None:
    via.put_object(Bucket=rgw_bucket, Key="k", Body=b"x" * 100_000)
    learned = [
        line["message"] for line in rgw_proxy.log_lines() if "takes uploads with" in line["message"]
    ]
    assert learned, rgw_proxy.log_text()[-3000:]
    assert all("signed chunks" in m for m in learned), learned
