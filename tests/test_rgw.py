"""The proxy in front of a real Ceph RADOS Gateway (tests/rgw.py) with default settings: the
store verifies SigV4, payload hashes, chunk signatures and Content-MD5, and refuses the trailer
payload, so uploads there go as signed aws-chunked (``S3PROXY_UPSTREAM_CHECKSUM=auto`` learns it).
Real clients: boto3, the AWS CLI, the AWS SDK for JavaScript, rclone and s3cmd."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from s3proxy.core.sizes import DEFAULT_SEGMENT_SIZE, ciphertext_length
from s3proxy.devstack import Vault, clean_env
from tests.conftest import ProxyProcess, aws_cli, cli_env, start_proxy, upload_multipart
from tests.test_backup_tools import WORKLOAD_KEYS, Tool, _env
from tests.test_upstream_checksums import TamperingRelay

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
    assert len(stored) == ciphertext_length(size, DEFAULT_SEGMENT_SIZE, 3)
    assert size < 64 or data[:64] not in stored


def test_the_proxy_logs_the_form_it_learned(
    via: Any, rgw: RGW, rgw_proxy: ProxyProcess, rgw_bucket: str
) -> None:
    via.put_object(Bucket=rgw_bucket, Key="k", Body=b"x" * 100_000)
    learned = [
        line["message"] for line in rgw_proxy.log_lines() if "takes uploads with" in line["message"]
    ]
    assert learned, rgw_proxy.log_text()[-3000:]
    assert all("signed chunks" in m for m in learned), learned
    direct = rgw.client()
    for bucket in direct.list_buckets()["Buckets"]:  # the probes stored nothing, anywhere
        listed = direct.list_objects_v2(Bucket=bucket["Name"]).get("Contents", [])
        assert not [o["Key"] for o in listed if ".s3proxy-probe-" in o["Key"]]


def test_boto3_multipart(via: Any, rgw_bucket: str) -> None:
    parts = [_data(5 * MiB, 1), _data(5 * MiB, 2), _data(1000, 3)]
    upload_multipart(via, rgw_bucket, "mp", parts)
    assert via.get_object(Bucket=rgw_bucket, Key="mp")["Body"].read() == b"".join(parts)
    head = via.head_object(Bucket=rgw_bucket, Key="mp")
    assert head["ContentLength"] == sum(map(len, parts))


def test_a_multipart_upload_completed_twice(via: Any, rgw_bucket: str) -> None:
    """S3 answers a repeated CompleteMultipartUpload of a completed upload with the same result
    (SDKs retry it after a lost answer)."""
    parts = [_data(5 * MiB, 4), _data(100, 5)]
    uid = via.create_multipart_upload(Bucket=rgw_bucket, Key="twice")["UploadId"]
    listed = [
        {
            "PartNumber": n,
            "ETag": via.upload_part(
                Bucket=rgw_bucket, Key="twice", UploadId=uid, PartNumber=n, Body=p
            )["ETag"],
        }
        for n, p in enumerate(parts, 1)
    ]
    done = {"Bucket": rgw_bucket, "Key": "twice", "UploadId": uid}
    first = via.complete_multipart_upload(**done, MultipartUpload={"Parts": listed})
    again = via.complete_multipart_upload(**done, MultipartUpload={"Parts": listed})
    assert first["ETag"] == again["ETag"]
    assert via.get_object(Bucket=rgw_bucket, Key="twice")["Body"].read() == b"".join(parts)


def test_ranged_reads(via: Any, rgw_bucket: str) -> None:
    data = _data(3 * DEFAULT_SEGMENT_SIZE + 1000, 6)
    via.put_object(Bucket=rgw_bucket, Key="r", Body=data)
    for first, last in [(0, 0), (100, DEFAULT_SEGMENT_SIZE + 5), (len(data) - 10, len(data) - 1)]:
        got = via.get_object(Bucket=rgw_bucket, Key="r", Range=f"bytes={first}-{last}")
        assert got["Body"].read() == data[first : last + 1]
        assert got["ContentRange"] == f"bytes {first}-{last}/{len(data)}"
    tail = via.get_object(Bucket=rgw_bucket, Key="r", Range="bytes=-7")["Body"].read()
    assert tail == data[-7:]


def test_copies(via: Any, rgw_bucket: str) -> None:
    data = _data(200_000, 7)
    put = via.put_object(Bucket=rgw_bucket, Key="src", Body=data, Metadata={"a": "1"})
    copied = via.copy_object(Bucket=rgw_bucket, Key="dst", CopySource=f"{rgw_bucket}/src")
    assert copied["CopyObjectResult"]["ETag"] == put["ETag"]
    got = via.get_object(Bucket=rgw_bucket, Key="dst")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"a": "1"}
    via.copy_object(
        Bucket=rgw_bucket,
        Key="dst2",
        CopySource=f"{rgw_bucket}/src",
        Metadata={"b": "2"},
        MetadataDirective="REPLACE",
    )
    got = via.get_object(Bucket=rgw_bucket, Key="dst2")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"b": "2"}


def _put_with(via: Any, bucket: str, key: str, body: bytes, **headers: str) -> Any:
    """PutObject with extra request headers (as s3-tests adds If-None-Match values)."""

    def add(params: dict[str, Any], **_: Any) -> None:
        params["headers"].update(headers)

    via.meta.events.register_first("before-call.s3.PutObject", add)
    try:
        return via.put_object(Bucket=bucket, Key=key, Body=body)
    finally:
        via.meta.events.unregister("before-call.s3.PutObject", add)


def _status(caught: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    error = caught.value.response
    return error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]


@pytest.mark.parametrize("size", [3, 1 * MiB])
def test_conditional_puts(via: Any, rgw: RGW, rgw_bucket: str, size: int) -> None:
    """If-Match / If-None-Match on PutObject name the plaintext ETag the client saw, as
    s3-tests sends them (bare), or ``*``; a quoted one gets what RGW itself answers for its
    own quoted ETag (RGW 16 compares the header with the ETag as text)."""
    old, new = _data(size, 8), _data(size, 9)
    etag = via.put_object(Bucket=rgw_bucket, Key="c", Body=old)["ETag"]
    for value in (etag.strip('"'), "*"):
        etag = _put_with(via, rgw_bucket, "c", new, **{"If-Match": value})["ETag"]
        assert via.get_object(Bucket=rgw_bucket, Key="c")["Body"].read() == new
        old, new = new, old
    for value in ("0123456789abcdef0123456789abcdef", "ABCORZ"):
        with pytest.raises(ClientError) as caught:
            _put_with(via, rgw_bucket, "c", new, **{"If-Match": value})
        assert _status(caught) == (412, "PreconditionFailed")
    for value in (etag.strip('"'), etag, "*"):
        with pytest.raises(ClientError) as caught:
            _put_with(via, rgw_bucket, "c", new, **{"If-None-Match": value})
        assert _status(caught) == (412, "PreconditionFailed")
    assert via.get_object(Bucket=rgw_bucket, Key="c")["Body"].read() == old
    _put_with(via, rgw_bucket, "c", new, **{"If-None-Match": "ABCORZ"})  # RGW takes any value
    assert via.get_object(Bucket=rgw_bucket, Key="c")["Body"].read() == new
    _put_with(via, rgw_bucket, "fresh", new, **{"If-None-Match": "*"})
    with pytest.raises(ClientError) as caught:
        _put_with(via, rgw_bucket, "absent", new, **{"If-Match": "*"})
    assert _status(caught)[0] in (404, 412)

    direct = rgw.client()
    stored = direct.put_object(Bucket=rgw_bucket, Key="direct", Body=b"d")["ETag"]
    expected: tuple[int, str] | None = None
    try:
        _put_with(direct, rgw_bucket, "direct", b"e", **{"If-Match": stored})
    except ClientError as exc:
        expected = exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]
    quoted = via.head_object(Bucket=rgw_bucket, Key="c")["ETag"]
    if expected is None:
        _put_with(via, rgw_bucket, "c", old, **{"If-Match": quoted})
    else:
        with pytest.raises(ClientError) as caught:
            _put_with(via, rgw_bucket, "c", old, **{"If-Match": quoted})
        assert _status(caught) == expected


def test_aws_cli_cp_up_and_down(rgw_proxy: ProxyProcess, rgw_bucket: str, tmp_path: Path) -> None:
    """Multipart (8 MiB parts, CRC32 per part) up, parallel ranged GETs with If-Match down."""
    src = tmp_path / "big.bin"
    src.write_bytes(_data(20 * MiB + 5, 10))
    env = cli_env(rgw_proxy)
    cli = aws_cli()
    for args in (
        [str(src), f"s3://{rgw_bucket}/big.bin"],
        [f"s3://{rgw_bucket}/big.bin", str(tmp_path / "back.bin")],
    ):
        done = subprocess.run(
            [cli, "s3", "cp", *args, "--only-show-errors"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()


def test_js_sdk_streaming_upload(rgw_proxy: ProxyProcess, rgw_bucket: str) -> None:
    """aws-chunked with a trailing CRC32 from the client; signed chunks to RGW."""
    node = shutil.which("node")
    assert node, "node is needed for the JS SDK tests"
    size = 3 * MiB + 3
    result = subprocess.run(
        [node, str(JS / "s3client.mjs"), rgw_proxy.endpoint, rgw_bucket, "js", str(size)],
        env=clean_env(),
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == {"equal": True, "length": size}


def _tool_env(tmp_path: Path, name: str) -> Path:
    home = tmp_path / f"{name}-home"
    home.mkdir()
    return home


def test_rclone(rgw_proxy: ProxyProcess, rgw_bucket: str, tmp_path: Path) -> None:
    home = _tool_env(tmp_path, "rclone")
    (home / "rclone.conf").write_text("")
    remote = {
        "TYPE": "s3",
        "PROVIDER": "Other",
        "ENDPOINT": rgw_proxy.endpoint,
        "ACCESS_KEY_ID": WORKLOAD_KEYS[0],
        "SECRET_ACCESS_KEY": WORKLOAD_KEYS[1],
        "REGION": "us-east-1",
    }
    env = {"RCLONE_CONFIG": str(home / "rclone.conf")}
    env.update({f"RCLONE_CONFIG_TARGET_{k}": v for k, v in remote.items()})
    rclone = Tool("rclone", [], _env(home, env))
    local = tmp_path / "local"
    local.mkdir()
    (local / "a.bin").write_bytes(_data(300_000, 11))
    (local / "b.txt").write_bytes(b"backup me\n" * 3000)
    rclone("copy", str(local), f"target:{rgw_bucket}/backup")
    result = rclone("check", str(local), f"target:{rgw_bucket}/backup")
    assert "0 differences found" in result.stderr
    rclone("copy", f"target:{rgw_bucket}/backup", str(tmp_path / "down"))
    assert (tmp_path / "down" / "a.bin").read_bytes() == (local / "a.bin").read_bytes()


def test_s3cmd(rgw_proxy: ProxyProcess, rgw_bucket: str, tmp_path: Path) -> None:
    home = _tool_env(tmp_path, "s3cmd")
    host = rgw_proxy.endpoint.removeprefix("http://")
    (home / ".s3cfg").write_text(
        "[default]\n"
        f"host_base = {host}\nhost_bucket = {host}\nuse_https = False\n"
        f"access_key = {WORKLOAD_KEYS[0]}\nsecret_key = {WORKLOAD_KEYS[1]}\n"
    )
    s3cmd = Tool("s3cmd", ["-c", str(home / ".s3cfg")], _env(home, {}))
    src = tmp_path / "up.bin"
    src.write_bytes(_data(16 * MiB + 3, 12))  # multipart at s3cmd's 15 MiB chunks
    s3cmd("put", str(src), f"s3://{rgw_bucket}/s3cmd.bin")
    s3cmd("get", f"s3://{rgw_bucket}/s3cmd.bin", str(tmp_path / "down.bin"))
    assert (tmp_path / "down.bin").read_bytes() == src.read_bytes()


def test_object_lock_headers(rgw: RGW, via: Any) -> None:
    """PutObject with an explicit retention and legal hold, whole and streamed."""
    bucket = f"lock-{uuid.uuid4().hex[:12]}"
    rgw.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    for key, size in (("small", 1000), ("streamed", 200_000)):
        data = _data(size, 13)
        via.put_object(
            Bucket=bucket,
            Key=key,
            Body=data,
            ObjectLockMode="GOVERNANCE",
            ObjectLockRetainUntilDate=until,
            ObjectLockLegalHoldStatus="ON",
        )
        assert via.get_object(Bucket=bucket, Key=key)["Body"].read() == data
        head = rgw.client().head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE"
        assert head["ObjectLockLegalHoldStatus"] == "ON"


def test_presigned_expiry_out_of_range(rgw_proxy: ProxyProcess, via: Any, rgw_bucket: str) -> None:
    """S3 refuses a presigned URL valid for more than seven days or less than a second."""
    import urllib.error
    import urllib.request

    via.put_object(Bucket=rgw_bucket, Key="p", Body=b"presigned")
    signer = rgw_proxy.client(signature_version="s3v4")
    url = signer.generate_presigned_url(
        "get_object", Params={"Bucket": rgw_bucket, "Key": "p"}, ExpiresIn=600
    )
    with urllib.request.urlopen(url, timeout=10) as ok:
        assert ok.read() == b"presigned"
    for value in ("604801", "0", "-7", "ten"):
        bad = url.replace("X-Amz-Expires=600", f"X-Amz-Expires={value}")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(bad, timeout=10)
        assert caught.value.code == 400, value
        assert b"<Code>AuthorizationQueryParametersError</Code>" in caught.value.read()


@pytest.fixture(scope="module")
def relayed(workdir: Path, vault: Vault, rgw: RGW) -> Iterator[tuple[TamperingRelay, Any]]:
    """A relay that can flip a byte of a PUT body between a proxy (default settings) and RGW;
    and a factory of proxies behind it with other settings."""
    relay = TamperingRelay(int(rgw.endpoint.rsplit(":", 1)[1]))
    started: list[ProxyProcess] = []

    def proxy(extra: dict[str, str]) -> ProxyProcess:
        p = start_proxy(workdir, vault, rgw, {"S3PROXY_S3_ENDPOINT": relay.endpoint, **extra})
        started.append(p)
        return p

    yield relay, proxy
    for p in started:
        p.stop()
    relay.stop()


@pytest.mark.parametrize("size", [2000, 300_000])
def test_a_body_altered_on_the_way_to_rgw_is_refused(
    relayed: tuple[TamperingRelay, Any], rgw: RGW, rgw_bucket: str, size: int
) -> None:
    """Signed chunks (streamed) and the signed SHA-256 (sent whole) let RGW refuse a body
    altered on the way: nothing is stored. Without them (``off``) the streamed body is stored,
    and only the read finds out."""
    relay, proxy = relayed
    checked = proxy({}).client(retries={"total_max_attempts": 1})
    checked.put_object(Bucket=rgw_bucket, Key="learn", Body=b"x" * 100_000)  # (the probe)
    key = f"tampered-{size}"
    relay.tamper = key
    try:
        with pytest.raises(ClientError) as caught:
            checked.put_object(Bucket=rgw_bucket, Key=key, Body=_data(size, 14))
        assert _status(caught)[0] in (400, 403)
        [put] = [r for r in relay.requests_for(key) if r.method == "PUT"]
        assert put.flipped
        if size > 64 * 1024:
            assert put.headers["x-amz-content-sha256"] == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        with pytest.raises(ClientError):
            rgw.client().head_object(Bucket=rgw_bucket, Key=key)

        if size > 64 * 1024:  # the control: unsigned, the same flip is stored
            unchecked = proxy({"S3PROXY_UPSTREAM_CHECKSUM": "off"})
            unchecked.client().put_object(Bucket=rgw_bucket, Key=key, Body=_data(size, 14))
            assert len(_stored(rgw, rgw_bucket, key)) == ciphertext_length(
                size, DEFAULT_SEGMENT_SIZE, 3
            )
            with pytest.raises(ClientError):
                checked.get_object(Bucket=rgw_bucket, Key=key)["Body"].read()
    finally:
        relay.tamper = None
    # RGW may answer a refused chunk and close before the rest of the body is relayed.
    unexpected = [e for e in relay.errors if not e.endswith("closed inside the body")]
    relay.errors.clear()
    assert not unexpected, unexpected
