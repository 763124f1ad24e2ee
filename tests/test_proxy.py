"""End to end: boto3 and the AWS CLI through ``s3proxy serve`` to a signature-enforcing moto S3,
with data keys from a real OpenBao. What is stored is read back from moto directly. (What is the
proxy's own logic (sizes, ranges, conditions, checksums, tampered objects, unencrypted objects)
is tested in process: tests/test_inproc_reads.py, tests/test_inproc_objects.py.)"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3proxy.devstack import S3Server, Vault, start_vault
from tests.conftest import ProxyProcess, aws_cli, cli_env, start_proxy


def _pattern(n: int) -> bytes:
    """Compressible, repetitive plaintext: the kind a weak cipher mode would leak."""
    line = b"customer=4711;iban=DE00123456780000;amount=100.00;\n"
    return (line * (n // len(line) + 1))[:n]


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


def test_an_unknown_expectation_is_refused_before_the_body(
    proxy: ProxyProcess, bucket: str
) -> None:
    status, _ = _raw_request(
        proxy.port,
        f"PUT /{bucket}/expect HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
        "Expect: 200-ok\r\nConnection: close\r\n\r\nhello",
    )
    assert status == 417


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


def test_no_secrets_in_logs(proxy: ProxyProcess, s3: S3Server, vault: Vault) -> None:
    text = proxy.log_text()
    assert s3.secret_key not in text
    assert f'"{vault.token}"' not in text and f"token {vault.token}" not in text
