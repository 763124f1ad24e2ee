"""End to end: boto3 and the AWS CLI through ``s3proxy serve`` to a signature-enforcing moto S3,
with data keys from a real OpenBao. What is stored is read back from moto directly."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3proxy.core.format import parse_header
from s3proxy.core.sizes import DEFAULT_SEGMENT_SIZE, ciphertext_length
from s3proxy.devstack import S3Server, Vault, start_vault
from tests.conftest import ProxyProcess, aws_cli, cli_env, start_proxy

S = DEFAULT_SEGMENT_SIZE
SIZES = [0, 1, S - 1, S, S + 1, 3 * S + 5, 10 * 1024 * 1024 + 3]


def _pattern(n: int) -> bytes:
    """Compressible, repetitive plaintext: the kind a weak cipher mode would leak."""
    line = b"customer=4711;iban=DE00123456780000;amount=100.00;\n"
    return (line * (n // len(line) + 1))[:n]


@pytest.mark.parametrize("size", SIZES)
def test_boto3_round_trips_byte_exact(client: Any, raw: Any, bucket: str, size: int) -> None:
    data = os.urandom(size)
    client.put_object(Bucket=bucket, Key="obj", Body=data)
    got = client.get_object(Bucket=bucket, Key="obj")
    assert got["ContentLength"] == size
    assert got["Body"].read() == data
    head = client.head_object(Bucket=bucket, Key="obj")
    assert head["ContentLength"] == size
    stored = raw.get_object(Bucket=bucket, Key="obj")["Body"].read()
    assert len(stored) == ciphertext_length(size, S, 2)


def test_stored_object_is_ciphertext(client: Any, raw: Any, bucket: str) -> None:
    data = _pattern(3 * S + 5)
    client.put_object(Bucket=bucket, Key="secret.txt", Body=data, Metadata={"owner": "team-a"})
    stored = raw.get_object(Bucket=bucket, Key="secret.txt")
    blob = stored["Body"].read()
    assert blob != data
    assert len(blob) == ciphertext_length(len(data), S, 2)
    windows = {blob[i : i + 16] for i in range(len(blob) - 15)}
    assert not any(data[i : i + 16] in windows for i in range(len(data) - 15))
    header = parse_header(blob)
    assert header.wrapped_key.startswith("vault:v1:") and header.plaintext_length == len(data)
    # The user's metadata is kept; the proxy's marker is there upstream but hidden from clients.
    assert stored["Metadata"]["owner"] == "team-a"
    assert "s3proxy-encryption" in stored["Metadata"]
    seen = client.head_object(Bucket=bucket, Key="secret.txt")["Metadata"]
    assert seen == {"owner": "team-a"}


def test_aws_cli_cp_up_and_down(proxy: ProxyProcess, raw: Any, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "small.txt"
    src.write_bytes(_pattern(5000))
    env = cli_env(proxy)
    up = subprocess.run(
        [aws_cli(), "s3", "cp", str(src), f"s3://{bucket}/cli/small.txt"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert up.returncode == 0, up.stderr.decode()
    dst = tmp_path / "back.txt"
    down = subprocess.run(
        [aws_cli(), "s3", "cp", f"s3://{bucket}/cli/small.txt", str(dst)],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert down.returncode == 0, down.stderr.decode()
    assert dst.read_bytes() == src.read_bytes()
    ls = subprocess.run(
        [aws_cli(), "s3", "ls", f"s3://{bucket}/cli/"], env=env, capture_output=True, timeout=120
    )
    assert ls.returncode == 0 and b"small.txt" in ls.stdout
    stored = raw.get_object(Bucket=bucket, Key="cli/small.txt")["Body"].read()
    assert stored != src.read_bytes()


def test_wrong_proxy_credentials_are_rejected_upstream(
    workdir: Path, vault: Vault, s3: S3Server, bucket: str, raw: Any
) -> None:
    for extra, code in [
        ({"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "SignatureDoesNotMatch"),
        ({"AWS_ACCESS_KEY_ID": "AKIAUNKNOWN000000000"}, "InvalidAccessKeyId"),
    ]:
        wrong = start_proxy(workdir, vault, s3, extra)
        try:
            c = wrong.client(retries={"max_attempts": 1})
            with pytest.raises(ClientError) as err:
                c.put_object(Bucket=bucket, Key="nope", Body=b"data")
            assert err.value.response["Error"]["Code"] == code
            with pytest.raises(ClientError):
                c.list_objects_v2(Bucket=bucket)
        finally:
            wrong.stop()
    assert raw.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def _store_raw(raw: Any, bucket: str, key: str, blob: bytes) -> None:
    """Replace a stored object's bytes upstream, keeping the proxy's metadata."""
    meta = raw.head_object(Bucket=bucket, Key=key)["Metadata"]
    raw.put_object(Bucket=bucket, Key=key, Body=blob, Metadata=meta)


def _integrity_errors(proxy: ProxyProcess) -> int:
    return sum(1 for line in proxy.log_lines() if line.get("integrity"))


@pytest.mark.parametrize(
    "tamper",
    [
        "flip-first-segment",
        "flip-late-segment",
        "flip-header",
        "remove-segment",
        "truncate",
        "truncate-segment-boundary",
    ],
)
def test_tampered_objects_fail_visibly(
    proxy: ProxyProcess, raw: Any, bucket: str, tamper: str
) -> None:
    client = proxy.client(retries={"max_attempts": 1})
    data = os.urandom(40 * S + 123)
    client.put_object(Bucket=bucket, Key="t", Body=data)
    blob = bytearray(raw.get_object(Bucket=bucket, Key="t")["Body"].read())
    seg = S + 16
    if tamper == "flip-first-segment":
        blob[256 + 10] ^= 1
    elif tamper == "flip-late-segment":
        blob[256 + 30 * seg + 7] ^= 0x40
    elif tamper == "flip-header":
        blob[25] ^= 1  # inside the salt
    elif tamper == "remove-segment":
        del blob[256 + 5 * seg : 256 + 6 * seg]
    elif tamper == "truncate":
        del blob[len(blob) - 1000 :]
    else:
        del blob[256 + 39 * seg :]
    _store_raw(raw, bucket, "t", bytes(blob))
    before = _integrity_errors(proxy)
    with pytest.raises(Exception) as err:
        client.get_object(Bucket=bucket, Key="t")["Body"].read()
    assert not isinstance(err.value, AssertionError)
    assert _integrity_errors(proxy) > before


def test_vault_down_put_fails_with_503_and_writes_nothing(
    workdir: Path, s3: S3Server, bucket: str, raw: Any
) -> None:
    own_vault = start_vault(workdir)
    no_caches = {"S3PROXY_DATAKEY_REUSE_SECONDS": "0", "S3PROXY_KEY_CACHE_SECONDS": "0"}
    p = start_proxy(workdir, own_vault, s3, {"S3PROXY_VAULT_TIMEOUT": "3", **no_caches})
    try:
        c = p.client(retries={"max_attempts": 1})
        c.put_object(Bucket=bucket, Key="before", Body=b"ok")
        own_vault.stop()
        with pytest.raises(ClientError) as err:
            c.put_object(Bucket=bucket, Key="after", Body=b"must not be stored")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert err.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert "Vault" in err.value.response["Error"]["Message"]
        # Reads need Vault too: they fail closed with 503 rather than return ciphertext.
        with pytest.raises(ClientError) as err:
            c.get_object(Bucket=bucket, Key="before")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        keys = [o["Key"] for o in raw.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert keys == ["before"]
        assert "root" not in p.log_text().replace("root_token", "")
    finally:
        p.stop()
        own_vault.stop()


class _Listener:
    """A loopback socket that counts connections: the host a hostile request names."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def _raw_request(port: int, head: str, body: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode() + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def test_host_and_absolute_uri_cannot_redirect_the_proxy(
    proxy: ProxyProcess, raw: Any, bucket: str
) -> None:
    evil = _Listener()
    try:
        body = b"routed to the configured upstream"
        status, _ = _raw_request(
            proxy.port,
            f"PUT http://127.0.0.1:{evil.port}/{bucket}/abs HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{evil.port}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n",
            body,
        )
        assert status == 200
        status, got = _raw_request(
            proxy.port,
            f"GET /{bucket}/abs HTTP/1.1\r\nHost: 127.0.0.1:{evil.port}\r\n"
            "Connection: close\r\n\r\n",
        )
        assert status == 200 and got == body
        status, _ = _raw_request(
            proxy.port,
            f"GET http://evil.example/{bucket}/abs HTTP/1.1\r\nHost: evil.example\r\n"
            "Connection: close\r\n\r\n",
        )
        assert status == 403  # a Host that names no address of the proxy (DNS rebinding)
    finally:
        evil.close()
    assert evil.connections == 0
    assert raw.get_object(Bucket=bucket, Key="abs")["Body"].read() != body


def test_proxy_ignores_endpoint_variables_for_its_own_upstream(
    workdir: Path, vault: Vault, s3: S3Server, bucket: str
) -> None:
    evil = _Listener()
    looped = start_proxy(
        workdir,
        vault,
        s3,
        {
            # the workload's variables; AWS_ENDPOINT_URL_STS is the proxy's own (honoured:
            # tests/test_settings_table.py)
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{evil.port}",
            "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{evil.port}",
        },
    )
    try:
        c = looped.client(retries={"max_attempts": 1})
        c.put_object(Bucket=bucket, Key="k", Body=b"v")
        assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    finally:
        looped.stop()
        evil.close()
    assert evil.connections == 0


def test_virtual_hosted_style_requests(proxy: ProxyProcess, client: Any, bucket: str) -> None:
    client.put_object(Bucket=bucket, Key="dir/vh.txt", Body=b"virtual host")
    status, got = _raw_request(
        proxy.port,
        f"GET /dir/vh.txt HTTP/1.1\r\nHost: {bucket}.localhost:{proxy.port}\r\n"
        "Connection: close\r\n\r\n",
    )
    assert status == 200 and got == b"virtual host"


def test_expect_100_continue(proxy: ProxyProcess, client: Any, bucket: str) -> None:
    body = os.urandom(100_000)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(
            f"PUT /{bucket}/expect HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        assert s.recv(1024).startswith(b"HTTP/1.1 100")
        s.sendall(body)
        assert s.recv(1024).startswith(b"HTTP/1.1 200")
    assert client.get_object(Bucket=bucket, Key="expect")["Body"].read() == body


def test_default_checksums_are_verified_and_wrong_ones_rejected(
    client: Any, raw: Any, bucket: str
) -> None:
    data = b"checksummed body"
    put = client.put_object(Bucket=bucket, Key="ok", Body=data)  # boto3 sends CRC32 by default
    assert "ChecksumCRC32" in put
    with pytest.raises(ClientError) as err:
        client.put_object(Bucket=bucket, Key="bad-crc", Body=data, ChecksumCRC32="AAAAAA==")
    assert err.value.response["Error"]["Code"] == "BadDigest"
    md5 = hashlib.md5(b"something else").digest()
    import base64

    with pytest.raises(ClientError) as err:
        client.put_object(
            Bucket=bucket, Key="bad-md5", Body=data, ContentMD5=base64.b64encode(md5).decode()
        )
    assert err.value.response["Error"]["Code"] == "BadDigest"
    keys = [o["Key"] for o in raw.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["ok"]


def test_get_with_checksum_mode_validates_cleanly(client: Any, bucket: str) -> None:
    data = os.urandom(S * 2 + 1)
    client.put_object(Bucket=bucket, Key="c", Body=data, ChecksumAlgorithm="SHA256")
    got = client.get_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert got["Body"].read() == data


def test_ranges(client: Any, bucket: str) -> None:
    data = os.urandom(5 * S + 17)
    client.put_object(Bucket=bucket, Key="r", Body=data)
    n = len(data)
    for spec, first, last in [
        ("bytes=0-0", 0, 0),
        (f"bytes={S - 1}-{S}", S - 1, S),
        (f"bytes={S + 3}-{4 * S}", S + 3, 4 * S),
        (f"bytes={n - 5}-", n - 5, n - 1),
        ("bytes=-17", n - 17, n - 1),
        (f"bytes=10-{n + 100}", 10, n - 1),
    ]:
        got = client.get_object(Bucket=bucket, Key="r", Range=spec)
        assert got["ContentRange"] == f"bytes {first}-{last}/{n}"
        assert got["Body"].read() == data[first : last + 1]
    with pytest.raises(ClientError) as err:
        client.get_object(Bucket=bucket, Key="r", Range=f"bytes={n}-")
    assert err.value.response["Error"]["Code"] == "InvalidRange"


def test_pass_through_operations(client: Any, raw: Any, bucket: str) -> None:
    client.put_object(Bucket=bucket, Key="a/1", Body=b"one")
    client.put_object(Bucket=bucket, Key="a/2", Body=b"two")
    client.head_bucket(Bucket=bucket)
    assert bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]
    assert "LocationConstraint" in client.get_bucket_location(Bucket=bucket)
    listed = client.list_objects_v2(Bucket=bucket, Prefix="a/")
    assert [o["Key"] for o in listed["Contents"]] == ["a/1", "a/2"]
    client.put_object_tagging(
        Bucket=bucket, Key="a/1", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}
    )
    assert client.get_object_tagging(Bucket=bucket, Key="a/1")["TagSet"] == [
        {"Key": "k", "Value": "v"}
    ]
    client.copy_object(Bucket=bucket, Key="a/copy", CopySource={"Bucket": bucket, "Key": "a/1"})
    assert client.get_object(Bucket=bucket, Key="a/copy")["Body"].read() == b"one"
    client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a/2"}, {"Key": "a/copy"}]})
    client.delete_object(Bucket=bucket, Key="a/1")
    assert raw.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    with pytest.raises(ClientError) as err:
        client.get_object(Bucket=bucket, Key="missing")
    assert err.value.response["Error"]["Code"] == "NoSuchKey"


def test_presigned_urls_made_against_the_proxy(client: Any, bucket: str) -> None:
    put_url = client.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "pre"}, ExpiresIn=60
    )
    # urllib's default form content type makes moto parse (and drop) the body; S3 would not.
    req = urllib.request.Request(
        put_url,
        data=b"presigned body",
        method="PUT",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    get_url = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "pre"}, ExpiresIn=60
    )
    with urllib.request.urlopen(get_url, timeout=10) as resp:
        assert resp.read() == b"presigned body"


def test_unsupported_operations_are_refused_with_501(client: Any, bucket: str) -> None:
    client.put_object(Bucket=bucket, Key="o", Body=b"x")
    with pytest.raises(ClientError) as err:
        client.select_object_content(
            Bucket=bucket,
            Key="o",
            Expression="select * from s3object",
            ExpressionType="SQL",
            InputSerialization={"CSV": {}},
            OutputSerialization={"CSV": {}},
        )
    assert err.value.response["Error"]["Code"] == "NotImplemented"
    assert "SelectObjectContent" in err.value.response["Error"]["Message"]


def test_unencrypted_objects_are_refused_by_default_and_allowed_narrowly(
    workdir: Path, vault: Vault, s3: S3Server, client: Any, raw: Any, bucket: str
) -> None:
    """Plaintext in the bucket is what the provider could have put under any key: refused
    unless a migration allows it, and then only under the prefixes and before the time given."""
    raw.put_object(Bucket=bucket, Key="legacy/old.txt", Body=b"written before the proxy")
    raw.put_object(Bucket=bucket, Key="other.txt", Body=b"elsewhere")
    once = {"retries": {"total_max_attempts": 1}}
    for call in (client.get_object, client.head_object):
        with pytest.raises(ClientError) as err:
            call(Bucket=bucket, Key="legacy/old.txt")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    migrating = start_proxy(
        workdir,
        vault,
        s3,
        {
            "S3PROXY_UNENCRYPTED_OBJECTS": "allow",
            "S3PROXY_UNENCRYPTED_PREFIXES": f"{bucket}/legacy/",
            "S3PROXY_UNENCRYPTED_BEFORE": "2999-01-01T00:00:00Z",
        },
    )
    too_late = start_proxy(
        workdir,
        vault,
        s3,
        {"S3PROXY_UNENCRYPTED_OBJECTS": "allow", "S3PROXY_UNENCRYPTED_BEFORE": "2000-01-01"},
    )
    try:
        allowed = migrating.client(**once)
        got = allowed.get_object(Bucket=bucket, Key="legacy/old.txt")
        assert got["Body"].read() == b"written before the proxy"
        ranged = allowed.get_object(Bucket=bucket, Key="legacy/old.txt", Range="bytes=8-13")
        assert ranged["Body"].read() == b"before"
        with pytest.raises(ClientError) as err:
            allowed.get_object(Bucket=bucket, Key="other.txt")  # outside the prefixes
        assert err.value.response["Error"]["Code"] == "AccessDenied"
        with pytest.raises(ClientError) as err:  # modified after the migration's start
            too_late.client(**once).get_object(Bucket=bucket, Key="legacy/old.txt")
        assert err.value.response["Error"]["Code"] == "AccessDenied"
    finally:
        migrating.stop()
        too_late.stop()


def test_no_secrets_in_logs(proxy: ProxyProcess, s3: S3Server, vault: Vault) -> None:
    text = proxy.log_text()
    assert s3.secret_key not in text
    assert f'"{vault.token}"' not in text and f"token {vault.token}" not in text


def test_content_encoding_is_stored_not_interpreted(client: Any, bucket: str) -> None:
    import gzip

    body = gzip.compress(b"compressed by the client " * 1000)
    client.put_object(
        Bucket=bucket, Key="z.gz", Body=body, ContentEncoding="gzip", ContentType="text/plain"
    )
    got = client.get_object(Bucket=bucket, Key="z.gz")
    assert got["ContentEncoding"] == "gzip"
    assert got["Body"].read() == body


def test_conditional_requests_behave_as_on_s3(client: Any, bucket: str) -> None:
    client.put_object(Bucket=bucket, Key="c", Body=b"0123456789" * 10_000)
    head = client.head_object(Bucket=bucket, Key="c")
    etag, modified = head["ETag"], head["LastModified"]
    assert client.get_object(Bucket=bucket, Key="c", IfMatch=etag)["ContentLength"] == 100_000
    ranged = client.get_object(Bucket=bucket, Key="c", IfMatch=etag, Range="bytes=5-14")
    assert ranged["Body"].read() == b"5678901234"
    for kwargs, status in [
        ({"IfMatch": '"0000"'}, 412),
        ({"IfMatch": '"0000"', "Range": "bytes=0-1"}, 412),
        ({"IfNoneMatch": etag}, 304),
        ({"IfNoneMatch": etag, "Range": "bytes=0-1"}, 304),
        ({"IfModifiedSince": modified}, 304),
        ({"IfUnmodifiedSince": modified.replace(year=2000)}, 412),
    ]:
        with pytest.raises(ClientError) as err:
            client.get_object(Bucket=bucket, Key="c", **kwargs)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == status, kwargs
        with pytest.raises(ClientError) as err:
            client.head_object(
                Bucket=bucket, Key="c", **{k: v for k, v in kwargs.items() if k != "Range"}
            )
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == status, kwargs


def test_plaintext_checksum_is_kept_and_validated_by_the_sdk(
    client: Any, raw: Any, bucket: str
) -> None:
    data = os.urandom(2 * S + 9)
    put = client.put_object(Bucket=bucket, Key="ck", Body=data)  # boto3 sends CRC32 by default
    got = client.get_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == put["ChecksumCRC32"]
    assert got["Body"].read() == data  # botocore validated the CRC32 of the decrypted body
    head = client.head_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == put["ChecksumCRC32"]
    # The checksum is kept in the stream's sealed trailer: metadata cannot change it, and a
    # changed trailer fails authentication instead of reporting another checksum.
    meta = raw.head_object(Bucket=bucket, Key="ck")["Metadata"]
    meta["s3proxy-checksum"] = "crc32:AAAAAA=="
    raw.copy_object(
        Bucket=bucket,
        Key="ck",
        CopySource={"Bucket": bucket, "Key": "ck"},
        Metadata=meta,
        MetadataDirective="REPLACE",
    )
    head = client.head_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == put["ChecksumCRC32"]
    stored = bytearray(raw.get_object(Bucket=bucket, Key="ck")["Body"].read())
    stored[-40] ^= 1  # inside the trailer
    raw.put_object(Bucket=bucket, Key="ck", Body=bytes(stored), Metadata=meta)
    with pytest.raises(ClientError) as err:
        client.head_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
