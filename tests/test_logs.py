"""Request logs of real proxy processes: one JSON object a line with the request's fields (or
plain text), the request id of every error the proxy answers in its log line, and no secret,
token, data key or body byte anywhere in the log."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from s3proxy.core.format import parse_header
from s3proxy.core.sizes import HEADER_SIZE
from s3proxy.devstack import S3Server, Vault
from s3proxy.telemetry import accesslog, logs
from s3proxy.telemetry.logs import JsonFormatter, setup_logging
from tests.conftest import ProxyProcess, start_proxy

pytestmark = pytest.mark.timeout(120)


def access_line(proxy: ProxyProcess, needle: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in proxy.log_lines():
            if needle in line.get("message", "") and " -> " in line["message"]:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no access-log line for {needle}:\n{proxy.log_text()}")


def test_access_lines_carry_the_request_fields(proxy: ProxyProcess, bucket: str) -> None:
    client = proxy.client()
    client.put_object(Bucket=bucket, Key="dir/logged.txt", Body=b"0123456789")
    line = access_line(proxy, f"PUT /{bucket}/dir/logged.txt PutObject")
    assert line["severity"] == "INFO" and line["time"].endswith("Z")
    assert len(line["request_id"]) == 16
    assert line["operation"] == "PutObject" and line["method"] == "PUT"
    assert line["bucket"] == bucket and line["key"] == "dir/logged.txt"
    assert line["status"] == 200 and line["upstream_status"] == 200
    assert line["bytes_in"] >= 10 and line["bytes_out"] == 0
    assert isinstance(line["duration_ms"], float)

    client.get_object(Bucket=bucket, Key="dir/logged.txt")["Body"].read()
    line = access_line(proxy, f"GET /{bucket}/dir/logged.txt GetObject")
    assert line["status"] == 200 and line["bytes_out"] == 10 and line["upstream_bytes"] > 10


def test_every_error_the_proxy_answers_carries_its_log_lines_request_id(
    proxy: ProxyProcess, bucket: str
) -> None:
    client = proxy.client()
    client.put_object(Bucket=bucket, Key="small", Body=b"abc")
    base = f"http://127.0.0.1:{proxy.port}/{bucket}/small"
    cases = [
        (urllib.request.Request(base, headers={"Range": "bytes=10-20"}), 416, "InvalidRange"),
        (urllib.request.Request(base, headers={"Host": "evil.example"}), 403, "AccessDenied"),
        (urllib.request.Request(base, method="HEAD", headers={"Range": "bytes=9-"}), 416, None),
    ]
    for req, status, code in cases:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=10)
        err = info.value
        assert err.code == status
        request_id = err.headers["x-amz-request-id"]
        body = err.read().decode()
        if code is not None:
            assert f"<Code>{code}</Code>" in body
            assert f"<RequestId>{request_id}</RequestId>" in body
        deadline = time.monotonic() + 10
        while not [ln for ln in proxy.log_lines() if ln.get("request_id") == request_id]:
            assert time.monotonic() < deadline, f"no log line has {request_id}"
            time.sleep(0.05)
        (logged,) = [
            ln
            for ln in proxy.log_lines()
            if ln.get("request_id") == request_id and " -> " in ln["message"]
        ]
        assert logged["status"] == status
        if code is not None:
            assert logged["error_code"] == code

    # An error of the upstream is relayed as it is: its id is in the log line too.
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{proxy.port}/{bucket}/absent", timeout=10)
    upstream_id = info.value.headers.get("x-amz-request-id")
    line = access_line(proxy, f"GET /{bucket}/absent GetObject")
    assert line["status"] == 404 and line["upstream_status"] == 404
    if upstream_id:
        assert line["upstream_request_id"] == upstream_id


def test_text_format(workdir: Path, vault: Vault, s3: S3Server, bucket: str) -> None:
    p = start_proxy(workdir, vault, s3, {"S3PROXY_LOG_FORMAT": "text"})
    try:
        p.client().put_object(Bucket=bucket, Key="t", Body=b"t")
        deadline = time.monotonic() + 10
        while f"PUT /{bucket}/t PutObject -> 200" not in p.log_text():
            assert time.monotonic() < deadline, p.log_text()
            time.sleep(0.05)
        (line,) = [ln for ln in p.log_text().splitlines() if f"/{bucket}/t PutObject" in ln]
        assert not line.startswith("{")
        assert " INFO s3proxy: PUT " in line and "[request_id=" in line
    finally:
        p.stop()


def test_no_secret_token_data_key_or_body_byte_is_logged(
    workdir: Path, vault: Vault, s3: S3Server, bucket: str, raw: Any
) -> None:
    status, created = vault.api("POST", "auth/token/create", {"ttl": "1h"})
    assert status == 200
    token = created["auth"]["client_token"]
    p = start_proxy(workdir, vault, s3, {"S3PROXY_LOG_LEVEL": "DEBUG", "VAULT_TOKEN": token})
    try:
        client = p.client()
        payload = b"PLAINTEXT-MARKER-" * 1000
        client.put_object(Bucket=bucket, Key="secret.txt", Body=payload)
        assert client.get_object(Bucket=bucket, Key="secret.txt")["Body"].read() == payload
        with pytest.raises(Exception):  # noqa: B017 - any refusal
            client.get_object(Bucket=bucket, Key="absent")
        stored = raw.get_object(Bucket=bucket, Key="secret.txt")["Body"].read()
        wrapped = parse_header(stored[:HEADER_SIZE]).wrapped_key
        status, answer = vault.api(
            "POST", f"transit/decrypt/{vault.transit_key}", {"ciphertext": wrapped}
        )
        assert status == 200
        data_key = base64.b64decode(answer["data"]["plaintext"])
        access_line(p, f"GET /{bucket}/absent GetObject")
    finally:
        p.stop()
    text = p.log_text()
    forbidden = {
        "vault token": token,
        "S3 secret key": s3.secret_key,
        "workload secret": "workload-secret",
        "data key (base64)": base64.b64encode(data_key).decode(),
        "data key (hex)": data_key.hex(),
        "body": "PLAINTEXT-MARKER",
    }
    for what, secret in forbidden.items():
        assert secret not in text, what
    assert json.loads(text.splitlines()[-1])["message"] == "stopped"


def test_json_lines_carry_only_known_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("s3proxy.test_logs")
    logger.addHandler(handler)
    try:
        logger.warning(
            "x %s", "y", extra={"request_id": "ABC", "authorization": "AWS4 secret", "status": 5}
        )
    finally:
        logger.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "x y" and entry["severity"] == "WARNING"
    assert entry["request_id"] == "ABC" and entry["status"] == 5
    assert "authorization" not in entry and "secret" not in stream.getvalue()


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_access_lines_written_directly_are_those_logging_writes(
    monkeypatch: pytest.MonkeyPatch, log_format: str
) -> None:
    """An access line goes out without a log record while the proxy's one handler is all that
    listens; it is the line logging writes, which takes over as soon as anything else
    listens (a filter here; caplog's handler in other tests)."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    sent: list[logging.LogRecord] = []

    def seen(record: logging.LogRecord) -> bool:
        sent.append(record)
        return True

    try:
        setup_logging("INFO", log_format)
        for through_logging in (False, True):
            if through_logging:
                root.handlers[0].addFilter(seen)
            record = accesslog.begin("GET")
            record.operation, record.bucket, record.key, record.status = "GetObject", "b", "k", 200
            record.started = time.monotonic() - 0.0123
            accesslog.finish(record, "/b/k")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logs.direct_lines = None
    direct, logged = stream.getvalue().splitlines()
    assert len(sent) == 1  # (only the second line was a log record)
    strip = re.compile(r"\d\d:\d\d:\d\d\.\d{3}|in \d+\.\d ms|\"duration_ms\": [\d.]+|[0-9A-F]{16}")
    assert strip.sub("_", direct) == strip.sub("_", logged)
    assert "GET /b/k GetObject -> 200 in" in direct
