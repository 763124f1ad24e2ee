"""Host and Origin rules with plain strings."""

from __future__ import annotations

import datetime as dt

import pytest

from s3proxy.core.access import cors_headers, host_allowed, hostname, origin_allowed
from s3proxy.core.headers import client_response_headers, upstream_request_headers
from s3proxy.core.unencrypted import UnencryptedPolicy, parse_before


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (None, True),
        ("localhost:8190", True),
        ("LOCALHOST", True),
        ("127.0.0.1:8190", True),
        ("127.8.9.10", True),
        ("[::1]:8190", True),
        ("bucket.localhost:8190", True),
        ("my-proxy.svc", True),  # listed
        ("attacker.example:8190", False),
        ("localhost.attacker.example", False),
        ("10.0.0.5:8190", False),
        ("[2001:db8::1]:8190", False),
    ],
)
def test_hosts(host: str | None, allowed: bool) -> None:
    assert host_allowed(host, ("localhost",), ("my-proxy.svc",)) is allowed


def test_hostname_strips_ports_and_brackets() -> None:
    assert hostname("[::1]:8190") == "::1"
    assert hostname("Example.COM:80") == "example.com"
    assert hostname("::1") == "::1"


def test_origins() -> None:
    assert origin_allowed("https://app.example", ["https://app.example/"])
    assert not origin_allowed("https://evil.example", ["https://app.example"])
    assert not origin_allowed("https://app.example", [])
    assert origin_allowed("null", ["*"])
    preflight = dict(cors_headers("https://app.example", "x-amz-date"))
    assert preflight["Access-Control-Allow-Origin"] == "https://app.example"
    assert preflight["Access-Control-Allow-Headers"] == "x-amz-date"


def test_cors_never_crosses_the_proxy() -> None:
    sent = upstream_request_headers(
        [("Origin", "https://a"), ("Access-Control-Request-Method", "GET"), ("x-k", "v")],
        encrypting=False,
    )
    assert sent == [("x-k", "v")]
    back = client_response_headers(
        [("Access-Control-Allow-Origin", "*"), ("ETag", '"e"')], decrypted=False
    )
    assert back == [("ETag", '"e"')]


def test_unencrypted_policy() -> None:
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert not UnencryptedPolicy().allows("b", "k", now)
    assert UnencryptedPolicy(allow=True).allows("b", "k", None)
    narrow = UnencryptedPolicy(True, ("b/old/",), parse_before("2026-11-02T00:00:00Z"))
    assert narrow.allows("b", "old/x", now)
    assert not narrow.allows("b", "new/x", now)
    assert not narrow.allows("c", "old/x", now)
    assert not narrow.allows("b", "old/x", now + dt.timedelta(days=2))
    assert not narrow.allows("b", "old/x", None)  # no date: not provably old
    assert parse_before("2026-11-02") == dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
