"""SIGTERM during a 50 MiB upload through a real proxy process (docs/operations.md, Shutdown):
with a grace period long enough the upload completes and reads back; with a short one the client
gets an error, no object exists, and a multipart upload whose part was cut stays resumable."""

from __future__ import annotations

import hashlib
import http.client
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from botocore.auth import UNSIGNED_PAYLOAD, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from s3proxy.devstack import S3Server, Vault, free_port
from tests.conftest import ProxyProcess, start_proxy

pytestmark = pytest.mark.timeout(180)

MiB = 1024 * 1024
SIZE = 50 * MiB


class _Unsigned(S3SigV4Auth):  # type: ignore[misc]
    def payload(self, request: AWSRequest) -> str:
        return str(UNSIGNED_PAYLOAD)


def block(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * (MiB // 32)


def payload_digest(size: int) -> str:
    h = hashlib.sha256()
    for i in range(size // MiB):
        h.update(block(i))
    return h.hexdigest()


@dataclass
class Upload:
    """A PUT of ``size`` bytes, one MiB every ``pace`` seconds, as a workload's SDK signs it."""

    port: int
    path: str
    size: int
    pace: float
    status: int | None = None
    error: BaseException | None = None
    sent: int = 0

    def __post_init__(self) -> None:
        self.started = threading.Event()  # set once 5 MiB have gone out
        self.done = threading.Event()

    def run(self) -> None:
        try:
            url = f"http://localhost:{self.port}{self.path}"
            req = AWSRequest(method="PUT", url=url, headers={"Content-Length": str(self.size)})
            creds = Credentials("AKIAWORKLOAD", "workload-secret")
            _Unsigned(creds, "s3", "us-east-1").add_auth(req)
            conn = http.client.HTTPConnection("localhost", self.port, timeout=60)
            conn.putrequest("PUT", self.path, skip_accept_encoding=True)
            for name, value in req.headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            for i in range(self.size // MiB):
                conn.send(block(i))
                self.sent += MiB
                if self.sent >= 5 * MiB:
                    self.started.set()
                time.sleep(self.pace)
            self.status = conn.getresponse().status
        except BaseException as exc:
            self.error = exc
        finally:
            self.started.set()
            self.done.set()

    def start(self) -> Upload:
        threading.Thread(target=self.run, daemon=True).start()
        assert self.started.wait(60)
        return self


def run(
    procs: list[ProxyProcess], workdir: Path, vault: Vault, s3: S3Server, grace: str
) -> ProxyProcess:
    env = {"S3PROXY_ADMIN_LISTEN": f"127.0.0.1:{free_port()}", "S3PROXY_SHUTDOWN_GRACE": grace}
    p = start_proxy(workdir, vault, s3, env)
    procs.append(p)
    return p


def test_a_long_grace_period_lets_the_upload_finish(
    procs: list[ProxyProcess],
    workdir: Path,
    vault: Vault,
    s3: S3Server,
    proxy: ProxyProcess,
    bucket: str,
) -> None:
    p = run(procs, workdir, vault, s3, grace="60")
    upload = Upload(p.port, f"/{bucket}/{quote('big object')}", SIZE, pace=0.03).start()
    p.proc.terminate()
    assert upload.done.wait(90)
    assert upload.error is None and upload.status == 200, upload.error
    assert p.proc.wait(20) == 0
    assert upload.sent == SIZE
    # Read back through another proxy: the object is complete and decrypts.
    body = proxy.client().get_object(Bucket=bucket, Key="big object")["Body"]
    h = hashlib.sha256()
    for chunk in iter(lambda: body.read(MiB), b""):
        h.update(chunk)
    assert h.hexdigest() == payload_digest(SIZE)


def test_a_short_grace_period_cuts_the_upload_and_leaves_no_object(
    procs: list[ProxyProcess], workdir: Path, vault: Vault, s3: S3Server, raw: Any, bucket: str
) -> None:
    p = run(procs, workdir, vault, s3, grace="1")
    upload = Upload(p.port, f"/{bucket}/cut", SIZE, pace=0.2).start()
    cut_at = time.monotonic()
    p.proc.terminate()
    assert p.proc.wait(20) == 0
    assert time.monotonic() - cut_at < 6
    assert upload.done.wait(30)
    # A cut connection, or an error answered before it closes: never a success.
    assert upload.status is None or upload.status >= 500, upload.status
    assert upload.sent < SIZE
    with pytest.raises(ClientError) as info:
        raw.head_object(Bucket=bucket, Key="cut")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "cutting 1 requests in flight" in p.log_text()


def test_a_cut_part_leaves_the_multipart_upload_resumable(
    procs: list[ProxyProcess],
    workdir: Path,
    vault: Vault,
    s3: S3Server,
    proxy: ProxyProcess,
    raw: Any,
    bucket: str,
) -> None:
    client = proxy.client()
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="parts")["UploadId"]
    p = run(procs, workdir, vault, s3, grace="1")
    part = Upload(p.port, f"/{bucket}/parts?partNumber=1&uploadId={upload_id}", 20 * MiB, 0.2)
    part.start()
    p.proc.terminate()
    assert p.proc.wait(20) == 0
    assert part.done.wait(30)
    assert part.status is None or part.status >= 500, part.status
    assert not raw.list_parts(Bucket=bucket, Key="parts", UploadId=upload_id).get("Parts")
    # The client retries the part through a proxy that is up, and completes the upload.
    data = b"".join(block(i) for i in range(6))
    etag = client.upload_part(
        Bucket=bucket, Key="parts", UploadId=upload_id, PartNumber=1, Body=data
    )["ETag"]
    client.complete_multipart_upload(
        Bucket=bucket,
        Key="parts",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert client.get_object(Bucket=bucket, Key="parts")["Body"].read() == data


def test_a_second_sigterm_cuts_at_once(
    procs: list[ProxyProcess], workdir: Path, vault: Vault, s3: S3Server, raw: Any, bucket: str
) -> None:
    p = run(procs, workdir, vault, s3, grace="60")
    upload = Upload(p.port, f"/{bucket}/twice", 20 * MiB, pace=0.2).start()
    p.proc.terminate()
    time.sleep(0.5)
    assert p.proc.poll() is None  # draining: the upload goes on
    p.proc.terminate()
    assert p.proc.wait(10) == 0
    assert upload.done.wait(30)
    assert upload.status is None or upload.status >= 500, upload.status
    with pytest.raises(ClientError):
        raw.head_object(Bucket=bucket, Key="twice")
    assert "stop requested again (SIGTERM)" in p.log_text()
