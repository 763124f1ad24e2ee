"""The upstream client on the wire: a loopback HTTP peer records what the proxy sends."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import botocore.auth
import botocore.session
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from s3proxy.core.headers import upstream_request_headers
from s3proxy.core.request import Target, parse_target
from s3proxy.upstream.client import EMPTY_SHA256, Upstream
from s3proxy.upstream.credentials import CredentialSource


class _Recorder:
    """Accepts one HTTP/1.1 request, records its head and body, answers 200."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.head = ""
        self.body = b""
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, body = data.split(b"\r\n\r\n", 1)
            self.head = head.decode()
            length = next(
                int(line.split(":", 1)[1])
                for line in self.head.split("\r\n")
                if line.lower().startswith("content-length:")
            )
            while len(body) < length:
                body += conn.recv(65536)
            self.body = body
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.sock.close()


def test_streamed_bodies_go_with_their_exact_length_never_chunked() -> None:
    peer = _Recorder()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"0123456789"
            await asyncio.sleep(0)

    async def main() -> int:
        creds = CredentialSource.static("AKIDEXAMPLE", "secret")
        await creds.start()
        upstream = Upstream(f"http://127.0.0.1:{peer.port}", "eu-central-1", creds)
        await upstream.start()
        try:
            target = Target("bkt", "dir/a b", (("x-id", "PutObject"),))
            resp = await upstream.send("PUT", target, [("x-amz-meta-k", "v")], body(), 100)
            return resp.status
        finally:
            await upstream.close()
            await creds.close()

    assert asyncio.run(main()) == 200
    lines = peer.head.split("\r\n")
    assert lines[0] == "PUT /bkt/dir/a%20b?x-id=PutObject HTTP/1.1"
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    assert headers["content-length"] == "100"
    assert "transfer-encoding" not in headers
    assert headers["host"] == f"127.0.0.1:{peer.port}"
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert (
        headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
        and "/eu-central-1/s3/aws4_request" in headers["authorization"]
    )
    assert "accept-encoding" not in headers
    assert peer.body == b"0123456789" * 10


class _Captured(Exception):
    pass


def test_gcs_signing_equals_a_gcs_hmac_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """The request the proxy signs for region ``auto`` at storage.googleapis.com has the same
    canonical request (so the same signature) as botocore configured as a GCS HMAC client."""
    gcs = botocore.session.get_session().create_client(
        "s3",
        endpoint_url="https://storage.googleapis.com",
        region_name="auto",
        aws_access_key_id="GOOG1EXAMPLEHMACKEY",
        aws_secret_access_key="hmac-secret",
        config=BotoConfig(s3={"addressing_style": "path"}),
    )
    captured: dict[str, Any] = {}

    def capture(request: Any, **_: Any) -> None:
        captured["request"] = request
        raise _Captured()

    gcs.meta.events.register("before-send.s3", capture)
    with pytest.raises(_Captured):
        gcs.get_object(Bucket="eu-bucket", Key="dir/a b+c.txt", Range="bytes=0-99")
    sent = captured["request"]
    expected = {k: v.decode() if isinstance(v, bytes) else v for k, v in sent.headers.items()}
    # Sign at the client's own moment (botocore may sign through awscrt, with its own clock).
    moment = dt.datetime.strptime(expected["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: moment)
    # What the proxy receives from that client, plus an Accept-Encoding as the Go SDK signs it
    # (Google rewrites that header, so the proxy must neither forward nor sign it).
    parts = urlsplit(sent.url)
    target = parse_target(parts.path + ("?" + parts.query if parts.query else ""), None, ())
    inbound = [*expected.items(), ("Accept-Encoding", "identity")]

    async def sign() -> dict[str, str]:
        creds = CredentialSource.static("GOOG1EXAMPLEHMACKEY", "hmac-secret")
        await creds.start()
        upstream = Upstream(
            "https://storage.googleapis.com",
            "auto",
            creds,
            now=lambda: moment.replace(tzinfo=dt.UTC),
        )
        _, headers = await upstream.sign(
            "GET", target, upstream_request_headers(inbound, encrypting=False), EMPTY_SHA256
        )
        await creds.close()
        return headers

    ours = asyncio.run(sign())
    assert "/auto/s3/aws4_request" in ours["Authorization"]
    assert ours["Authorization"] == expected["Authorization"]
    assert "accept-encoding" not in ours["Authorization"]


class _BotocoreSigner(botocore.auth.S3SigV4Auth):  # type: ignore[misc]
    """The reference: botocore's Python S3 signer, told the payload hash."""

    def __init__(self, creds: Any, payload_hash: str) -> None:
        super().__init__(creds, "s3", "eu-central-1")
        self._payload_hash = payload_hash

    def payload(self, request: Any) -> str:
        return self._payload_hash


_names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40
)
_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@settings(max_examples=150, deadline=None)
@given(
    key=_names,
    query=st.lists(
        st.tuples(
            st.sampled_from(
                ["uploadId", "partNumber", "prefix", "versionId", "tagging", "list-type", "marker"]
            ),
            st.one_of(st.none(), _names),
        ),
        max_size=4,
    ),
    meta=st.lists(
        st.tuples(
            st.sampled_from(
                # the last three are never signed, but still sent
                [
                    "x-amz-meta-a",
                    "x-amz-meta-b",
                    "content-type",
                    "Expect",
                    "User-Agent",
                    "x-amzn-trace-id",
                ]
            ),
            _values,
        ),
        max_size=4,
    ),
    method=st.sampled_from(["GET", "PUT", "POST", "HEAD", "DELETE"]),
    payload=st.sampled_from(
        [EMPTY_SHA256, "UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"]
    ),
    token=st.one_of(st.none(), st.just("session/token+value==")),
)
def test_the_signer_signs_exactly_as_botocore(
    key: str,
    query: list[tuple[str, str | None]],
    meta: list[tuple[str, str]],
    method: str,
    payload: str,
    token: str | None,
) -> None:
    """Every request the proxy signs (upstream/signer.py) carries the Authorization botocore's
    own S3 signer computes for it (any key, query, metadata, payload type and session token)."""
    moment = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)
    target = Target("bucket-1", key, tuple(query))
    headers = [(k, v) for k, v in meta]

    async def ours() -> dict[str, str]:
        creds = CredentialSource.static("AKIDEXAMPLE", "secret/key+1", token)
        await creds.start()
        upstream = Upstream("http://127.0.0.1:9000", "eu-central-1", creds, now=lambda: moment)
        _, signed = await upstream.sign(method, target, headers, payload)
        await creds.close()
        return signed

    signed = asyncio.run(ours())
    merged: dict[str, str] = {}
    for name, value in headers:
        merged[name.lower()] = (
            f"{merged[name.lower()]},{value}" if name.lower() in merged else value
        )
    merged["host"] = "127.0.0.1:9000"
    request = AWSRequest(
        method=method, url="http://127.0.0.1:9000" + target.upstream_path(), headers=merged
    )
    request.context["timestamp"] = moment.strftime("%Y%m%dT%H%M%SZ")
    request.headers["X-Amz-Date"] = request.context["timestamp"]
    request.headers["X-Amz-Content-SHA256"] = payload
    if token is not None:
        request.headers["X-Amz-Security-Token"] = token
    reference = _BotocoreSigner(Credentials("AKIDEXAMPLE", "secret/key+1", token), payload)
    canonical = reference.canonical_request(request)
    expected = reference.signature(reference.string_to_sign(request, canonical), request)
    assert signed["Authorization"].endswith(f"Signature={expected}"), canonical
    sent = {k.lower(): v for k, v in signed.items()}
    assert all(sent[k].strip() == v.strip() for k, v in merged.items()), (sent, merged)


def test_cookies_the_upstream_sets_are_never_sent_back() -> None:
    """The proxy is no browser: a Set-Cookie from the store (or a load balancer in front of
    it) is not kept, so no later upstream request carries it."""
    from aiohttp import web

    seen: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        resp = web.Response(body=b"")
        resp.set_cookie("AWSALB", "sticky-session", path="/")
        return resp

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        creds = CredentialSource.static("AKIDEXAMPLE", "secret")
        await creds.start()
        upstream = Upstream(
            f"http://localhost:{port}", "us-east-1", creds
        )  # a name: cookies of IPs are never kept
        await upstream.start()
        try:
            for _ in range(2):
                resp = await upstream.send("GET", Target("bkt", "k", ()), [])
                assert resp.status == 200
                assert "AWSALB" in resp.headers.get("Set-Cookie", "")
                resp.release()
        finally:
            await upstream.close()
            await creds.close()
            await runner.cleanup()

    asyncio.run(main())
    assert seen == [None, None]
