"""Hostile input through the real proxy (issue 9): odd bytes in the request still get a
well-formed S3 error document."""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from s3proxy.devstack import S3Server, Vault
from tests.conftest import PROXY_WORKERS, ProxyProcess, start_proxy, tree_peak_rss_mib


@pytest.mark.parametrize(
    "path",
    [
        "/some-bucket/%FF?torrent",
        "/some-bucket/ctl%08key?torrent",
        "/some-bucket/%ED%A0%80?torrent",
    ],
)
def test_odd_keys_get_well_formed_error_documents(proxy: ProxyProcess, path: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    connection.request("GET", path)
    resp = connection.getresponse()
    body = resp.read()
    connection.close()
    assert resp.status == 501, body
    root = ET.fromstring(body)
    assert root.findtext("Code") == "NotImplemented"
    assert root.findtext("Resource", "").startswith("/some-bucket/")


HOSTILE_CLIENTS = r"""
import http.client, sys, threading, time
port, bucket, upload, seconds = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
parts = "".join(
    f"<Part><PartNumber>{i}</PartNumber><ETag>\"{i:032x}\"</ETag>"
    f"<ChecksumSHA256>{'A' * 43}=</ChecksumSHA256><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part>"
    for i in range(1, 10001)
)
body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
assert len(body) > 2_000_000, len(body)
deadline = time.monotonic() + seconds
sent = [0]
def hostile():
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("POST", f"/{bucket}/big?uploadId={upload}", body=body)
            c.getresponse().read()
            c.close()
            sent[0] += 1
        except OSError:
            pass
threads = [threading.Thread(target=hostile) for _ in range(50)]
for t in threads: t.start()
for t in threads: t.join()
print(sent[0])
"""


def test_fifty_hostile_clients_neither_exhaust_memory_nor_stall_the_proxy(
    workdir: Path, vault: Vault, s3: S3Server, bucket: str
) -> None:
    """50 clients sending CompleteMultipartUpload bodies of 10,000 parts (about 2 MB each) for
    a real upload, as fast as they can, so that the proxy reads and parses every body: its peak
    RSS stays under the 256 MiB limit of deploy/sidecar.yaml, and it keeps answering other
    requests (median within 50 ms, 9 in 10 within 200 ms, none over 500 ms)."""
    proxy = start_proxy(workdir, vault, s3)
    try:
        upload = proxy.client().create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
        hostile = subprocess.Popen(
            [sys.executable, "-c", HOSTILE_CLIENTS, str(proxy.port), bucket, upload, "6"],
            stdout=subprocess.PIPE,
        )
        time.sleep(1.5)  # let the load build up
        latencies = []
        while hostile.poll() is None and len(latencies) < 40:
            started = time.monotonic()
            connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
            connection.request("GET", f"/{bucket}/probe?torrent")
            assert connection.getresponse().status == 501
            connection.close()
            latencies.append(time.monotonic() - started)
            time.sleep(0.05)
        out, _ = hostile.communicate(timeout=120)
        assert int(out) >= 50  # the hostile requests were really served meanwhile
        assert len(latencies) >= 20
        ranked = sorted(latencies)
        print(
            f"latency under load: median {ranked[len(ranked) // 2]:.3f} s, max {ranked[-1]:.3f} s"
        )
        # Half within 50 ms, 9 in 10 within 200 ms: a loop held by parsing would show in both
        # (on this 2-core machine, where the hostile clients and the upstream share the CPU
        # with the proxy, the 90th percentile is 0.05 to 0.15 s run to run).
        assert ranked[len(ranked) // 2] < 0.05, ranked
        assert ranked[int(len(ranked) * 0.9)] < 0.2, ranked[-5:]
        assert ranked[-1] < 0.5, ranked[-5:]  # and none stalled
        # deploy/sidecar.yaml's limit for its one worker; a pod running N workers needs N times
        # it (docs/performance.md, Workers), which the supervisor's share fits in.
        assert tree_peak_rss_mib(proxy.proc.pid) < 256 * PROXY_WORKERS
    finally:
        proxy.stop()


def _request(
    proxy: ProxyProcess, method: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    connection.request(method, path, headers=headers)
    resp = connection.getresponse()
    body = resp.read()
    connection.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def test_a_foreign_host_or_an_unknown_origin_gets_no_data(
    proxy: ProxyProcess, client: Any, bucket: str
) -> None:
    secret = b"decrypted data no web page may read"
    client.put_object(Bucket=bucket, Key="s", Body=secret)
    path = f"/{bucket}/s"
    assert _request(proxy, "GET", path, {"Host": f"127.0.0.1:{proxy.port}"})[2] == secret
    assert _request(proxy, "GET", path, {"Host": f"{bucket}.localhost:{proxy.port}"})[0] == 404
    for headers in (
        {"Host": f"rebound.attacker.example:{proxy.port}"},  # DNS rebinding
        {"Host": f"localhost:{proxy.port}", "Origin": "https://attacker.example"},
    ):
        status, got, body = _request(proxy, "GET", path, headers)
        assert status == 403 and secret not in body, headers
        assert ET.fromstring(body).findtext("Code") == "AccessDenied"
        assert "access-control-allow-origin" not in got
    status, _, body = _request(
        proxy,
        "OPTIONS",
        path,
        {"Origin": "https://attacker.example", "Access-Control-Request-Method": "GET"},
    )
    assert status == 403


def test_configured_origins_get_the_proxys_own_cors(
    workdir: Path, vault: Vault, s3: S3Server, bucket: str
) -> None:
    proxy = start_proxy(
        workdir,
        vault,
        s3,
        {"S3PROXY_CORS_ORIGINS": "https://app.example", "S3PROXY_ALLOWED_HOSTS": "s3proxy.svc"},
    )
    try:
        proxy.client().put_object(Bucket=bucket, Key="c", Body=b"for the app")
        origin = {"Origin": "https://app.example"}
        status, got, body = _request(proxy, "GET", f"/{bucket}/c", origin)
        assert (status, body) == (200, b"for the app")
        assert got["access-control-allow-origin"] == "https://app.example"
        assert "ETag" in got["access-control-expose-headers"]
        status, got, _ = _request(
            proxy,
            "OPTIONS",
            f"/{bucket}/c",
            {
                **origin,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "x-amz-date",
            },
        )
        assert status == 200 and "PUT" in got["access-control-allow-methods"]
        assert got["access-control-allow-headers"] == "x-amz-date"
        status, _, body = _request(proxy, "GET", f"/{bucket}/c", {"Host": "s3proxy.svc:8190"})
        assert (status, body) == (200, b"for the app")
    finally:
        proxy.stop()
