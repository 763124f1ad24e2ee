"""Hostile input through the real proxy (issue 9): odd bytes in the request still get a
well-formed S3 error document."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from hypothesis import example, given, settings
from hypothesis import strategies as st

from s3proxy.config import load
from s3proxy.core.request import Action, Target
from s3proxy.devstack import S3Server, Vault
from s3proxy.server.app import Proxy
from s3proxy.server.shell import ProxyServer
from tests.conftest import PROXY_WORKERS, ProxyProcess, start_proxy, tree_peak_rss_mib

pytest_plugins = ["tests.localstack", "tests.rgw"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        # Keys that are not UTF-8 (a stray byte, an encoded surrogate): S3's InvalidURI.
        ("/some-bucket/%FF?torrent", 400, "InvalidURI"),
        ("/some-bucket/%ED%A0%80?torrent", 400, "InvalidURI"),
        ("/some-bucket/%FF", 400, "InvalidURI"),
        ("/some-bucket/ctl%08key?torrent", 501, "NotImplemented"),
        ("/some-bucket/new%0Aline?torrent", 501, "NotImplemented"),
    ],
)
def test_odd_keys_get_well_formed_error_documents(
    proxy: ProxyProcess, path: str, status: int, code: str
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    connection.request("GET", path)
    resp = connection.getresponse()
    body = resp.read()
    connection.close()
    assert resp.status == status, body
    root = ET.fromstring(body)
    assert root.findtext("Code") == code
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
        peak = tree_peak_rss_mib(proxy.proc.pid)
        print(f"peak RSS {peak:.0f} MiB")
        assert peak < 256 * PROXY_WORKERS
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
    # A preflight without an Origin is no CORS request: 400, as S3 answers (s3-tests checks it)
    status, got, body = _request(proxy, "OPTIONS", path, {})
    assert status == 400 and ET.fromstring(body).findtext("Code") == "BadRequest"
    assert "access-control-allow-origin" not in got


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
        status, got, body = _request(proxy, "OPTIONS", f"/{bucket}/c", origin)
        assert status == 400 and ET.fromstring(body).findtext("Code") == "BadRequest"
        assert "access-control-allow-methods" not in got
        status, _, body = _request(proxy, "GET", f"/{bucket}/c", {"Host": "s3proxy.svc:8190"})
        assert (status, body) == (200, b"for the app")
    finally:
        proxy.stop()


@pytest.fixture(scope="module", params=["localstack", "rgw"])
def before_store(request: pytest.FixtureRequest, workdir: Path, vault: Vault) -> Any:
    """A proxy in front of a store that keeps keys with newlines (moto cannot)."""
    store = request.getfixturevalue(request.param)
    proxy = start_proxy(workdir, vault, store)
    yield proxy
    proxy.stop()


KEYS_S3_STORES = ["a\nb", "line\r\nbreak", "tab\tand\x01\x1f\x7f", "\u2028sep", "a%0Ab?c#d&e"]


@settings(max_examples=25, deadline=None)
@given(
    key=st.text(alphabet="ab/ \n\r\t\x01\x1f\x7f%+?#&\u00e9\u2028", min_size=1, max_size=8).filter(
        lambda key: not key.startswith("/")  # (LocalStack takes "/b//" for the bucket)
    )
)
@example(key=KEYS_S3_STORES[0])
@example(key=KEYS_S3_STORES[1])
@example(key=KEYS_S3_STORES[2])
@example(key=KEYS_S3_STORES[3])
@example(key=KEYS_S3_STORES[4])
def test_keys_with_newlines_and_control_characters_round_trip(
    before_store: ProxyProcess, key: str
) -> None:
    """boto3 ``put_object(Key="a\\nb")`` got a plain-text 404 (the route pattern took no
    newline); S3 stores such keys, and so do LocalStack and Ceph RGW (moto cannot)."""
    client = before_store.client()
    client.create_bucket(Bucket="odd-keys")
    client.put_object(Bucket="odd-keys", Key=key, Body=key.encode())
    assert client.get_object(Bucket="odd-keys", Key=key)["Body"].read() == key.encode()
    assert client.head_object(Bucket="odd-keys", Key=key)["ContentLength"] == len(key.encode())
    client.delete_object(Bucket="odd-keys", Key=key)


STALL_TIMEOUT = 2.0  # the test's S3PROXY_BODY_IDLE_TIMEOUT


def _stalled_upload(
    port: int, path: str, size: int, out: list[tuple[float, bytes]], chunked: bool = False
) -> None:
    """Sends a PUT of ``size`` bytes but its last (as aws-chunked framing if ``chunked``),
    then waits for the answer."""
    body = b"x" * size
    extra = ""
    if chunked:
        extra = (
            "x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\n"
            f"Content-Encoding: aws-chunked\r\nx-amz-decoded-content-length: {size}\r\n"
        )
        body = f"{size:x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = (
            f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"
            f"Content-Type: application/octet-stream\r\n{extra}\r\n"
        ).encode()
        sock.sendall(head + body[:-1])
        sent = time.monotonic()
        answer = b""
        with contextlib.suppress(OSError):
            while b"</Error>" not in answer:
                piece = sock.recv(65536)
                if not piece:
                    break
                answer += piece
        out.append((time.monotonic() - sent, answer))


def test_stalled_uploads_are_cut_with_request_timeout_and_store_nothing(
    workdir: Path, vault: Vault, s3: S3Server, bucket: str, raw: Any
) -> None:
    """40 clients send all but the last byte of their bodies and stall: pass-through bodies the
    proxy holds (PUT ?acl, 1 MiB), encrypted PutObjects (1 MiB streamed, 32 KiB sealed whole,
    1 MiB aws-chunked) and UploadParts (1 MiB). Each is answered 400 RequestTimeout within the
    configured idle timeout, nothing is stored, the proxy's memory stays within the sidecar's
    limit, and other requests are answered meanwhile within 100 ms."""
    proxy = start_proxy(
        workdir,
        vault,
        s3,
        {"S3PROXY_BODY_IDLE_TIMEOUT": str(STALL_TIMEOUT), "S3PROXY_WORKERS": "1"},
    )
    try:
        client = proxy.client()
        client.put_object(Bucket=bucket, Key="acl-target", Body=b"a")
        client.put_object(Bucket=bucket, Key="probe", Body=b"small object")
        upload = client.create_multipart_upload(Bucket=bucket, Key="parts")["UploadId"]
        mib = 1024 * 1024
        uploads = [(f"/{bucket}/acl-target?acl", mib, False)] * 20
        uploads += [(f"/{bucket}/big-{i}", mib, False) for i in range(6)]
        uploads += [(f"/{bucket}/small-{i}", 32 * 1024, False) for i in range(6)]
        uploads += [(f"/{bucket}/chunked-{i}", mib, True) for i in range(4)]
        uploads += [
            (f"/{bucket}/parts?partNumber={i + 1}&uploadId={upload}", mib, False) for i in range(4)
        ]
        answers: list[tuple[float, bytes]] = []
        threads = [
            threading.Thread(
                target=_stalled_upload, args=(proxy.port, path, size, answers, chunked)
            )
            for path, size, chunked in uploads
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # all of them stalled by now
        latencies = []
        for _ in range(10):
            started = time.monotonic()
            connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
            connection.request("GET", f"/{bucket}/probe")
            assert connection.getresponse().read() == b"small object"
            connection.close()
            latencies.append(time.monotonic() - started)
            time.sleep(0.05)
        for thread in threads:
            thread.join(30)
        assert len(answers) == len(uploads)
        for waited, answer in answers:
            assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
            assert b"<Code>RequestTimeout</Code>" in answer, answer[:400]
            assert STALL_TIMEOUT - 0.5 < waited < STALL_TIMEOUT + 1.5, waited
        stored = raw.list_objects_v2(Bucket=bucket).get("Contents", [])
        assert sorted(o["Key"] for o in stored) == ["acl-target", "probe"]
        assert raw.list_parts(Bucket=bucket, Key="parts", UploadId=upload).get("Parts", []) == []
        ranked = sorted(latencies)
        print(f"latency during the stall: median {ranked[5]:.3f} s, max {ranked[-1]:.3f} s")
        assert ranked[-1] < 0.1, ranked
        peak = tree_peak_rss_mib(proxy.proc.pid)
        print(f"peak RSS {peak:.0f} MiB")
        assert peak < 256
    finally:
        proxy.stop()


def test_a_defect_is_an_internal_error_document_with_a_logged_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception outside the error hierarchy (a defect, injected here into one handler) is
    answered with S3's InternalError document and its request id, and logged with its
    traceback; before, aiohttp answered a bare text 500 and logged nothing of the request."""
    config = load(
        env={
            "S3PROXY_VAULT_TRANSIT_KEY": "k",
            "VAULT_ADDR": "http://127.0.0.1:1",
            "VAULT_TOKEN": "t",
        }
    )
    proxy = Proxy(config, cast(Any, None), cast(Any, None))

    async def defect(request: web.Request, target: Target) -> web.StreamResponse:
        raise ValueError("invalid literal for int() with base 10: '²'")

    proxy._handlers[Action.GET_OBJECT] = defect

    async def run() -> tuple[int, str, bytes]:
        runner = ProxyServer(proxy).runner()
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/bucket/key") as resp,
            ):
                return resp.status, resp.headers.get("x-amz-request-id", ""), await resp.read()
        finally:
            await runner.cleanup()

    with caplog.at_level(logging.ERROR, logger="s3proxy"):
        status, request_id, body = asyncio.run(run())
    root = ET.fromstring(body)
    assert status == 500 and root.findtext("Code") == "InternalError", body
    assert root.findtext("RequestId") == request_id != ""
    assert "invalid literal" not in body.decode()  # (the defect's text stays in the log)
    logged = [r for r in caplog.records if r.exc_info and "unexpected error" in r.getMessage()]
    assert logged and "invalid literal" in str(logged[0].exc_info[1])  # type: ignore[index]


def test_held_bodies_past_the_memory_budget_get_slow_down_at_once(
    workdir: Path, vault: Vault, s3: S3Server, bucket: str
) -> None:
    """With a budget of 4 MiB for held bodies, 6 stalled 1 MiB pass-through bodies: 4 are held
    (and cut by the idle timeout), the other 2 are answered 503 SlowDown without waiting."""
    proxy = start_proxy(
        workdir,
        vault,
        s3,
        {
            "S3PROXY_BODY_IDLE_TIMEOUT": str(STALL_TIMEOUT),
            "S3PROXY_BODY_MEMORY": str(4 * 1024 * 1024),
            "S3PROXY_WORKERS": "1",
        },
    )
    try:
        proxy.client().put_object(Bucket=bucket, Key="acl-target", Body=b"a")
        answers: list[tuple[float, bytes]] = []
        args = (proxy.port, f"/{bucket}/acl-target?acl", 1024 * 1024, answers)
        threads = [threading.Thread(target=_stalled_upload, args=args) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        codes = sorted(
            (answer.split(b"<Code>")[1].split(b"</Code>")[0], waited) for waited, answer in answers
        )
        assert [code for code, _ in codes] == [b"RequestTimeout"] * 4 + [b"SlowDown"] * 2, codes
        assert all(waited < 1.0 for code, waited in codes if code == b"SlowDown"), codes
    finally:
        proxy.stop()


def _trickled(port: int, method: str, path: str, size: int) -> tuple[float, bytes]:
    """Sends a body of ``size`` bytes (the start of an XML document, then spaces) one byte
    every 0.2 s; the answer and when it came."""
    body = b"<CompleteMultipartUpload>".ljust(size)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {size}\r\n"
        sock.sendall(head.encode() + b"\r\n")
        started = time.monotonic()
        sock.setblocking(False)
        answer = b""
        for byte in body:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer:
                break
            with contextlib.suppress(OSError):
                sock.send(bytes([byte]))
            time.sleep(0.2)
        sock.settimeout(10)
        with contextlib.suppress(OSError):
            while b"</Error>" not in answer:
                piece = sock.recv(65536)
                if not piece:
                    break
                answer += piece
        return time.monotonic() - started, answer


def test_held_bodies_that_trickle_are_cut_at_the_overall_timeout(
    workdir: Path, vault: Vault, s3: S3Server, bucket: str
) -> None:
    """A client sending a byte every 0.2 s never trips the idle timeout (5 s here), but a body
    the proxy holds (pass-through, CompleteMultipartUpload) must be complete within the held
    timeout (1.5 s here): then 400 RequestTimeout."""
    proxy = start_proxy(
        workdir,
        vault,
        s3,
        {"S3PROXY_BODY_IDLE_TIMEOUT": "5", "S3PROXY_BODY_HELD_TIMEOUT": "1.5"},
    )
    try:
        client = proxy.client()
        client.put_object(Bucket=bucket, Key="acl-target", Body=b"a")
        upload = client.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
        for method, path in (
            ("PUT", f"/{bucket}/acl-target?acl"),
            ("POST", f"/{bucket}/m?uploadId={upload}"),
        ):
            waited, answer = _trickled(proxy.port, method, path, 100)
            assert b"<Code>RequestTimeout</Code>" in answer, (path, answer[:300])
            assert 1.2 < waited < 3.0, (path, waited)
    finally:
        proxy.stop()
