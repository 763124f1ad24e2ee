"""End-to-end faults: the upstream or the client breaking off mid-request, the upstream answering
500/503 or being down, and a Vault slower than the proxy's timeout. Each fault must give the
client a clear S3 error or a cut connection, never a stored partial object or a short body
presented as complete (docs/design.md, Writing, Reading and Vault).

Faults are made by :class:`FaultRelay`, a loopback TCP relay between the proxy and moto (or
OpenBao) that forwards bytes unchanged (so SigV4 signatures stay valid) and, for requests whose
request line contains a given string, resets both connections after N body bytes, answers a
canned HTTP error, or holds the request for a while.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    ResponseStreamingError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from s3proxy.devstack import S3Server, Vault, free_port
from tests.conftest import ProxyProcess, start_proxy, upload_multipart

pytestmark = pytest.mark.timeout(60)

MiB = 1024 * 1024
RECV = 65536
# Every client call is bounded: one attempt, and no wait longer than this.
CLIENT = {"retries": {"total_max_attempts": 1}, "connect_timeout": 5, "read_timeout": 20}
# What botocore raises for a connection that broke (after or instead of an HTTP answer).
CONNECTION_ERRORS = (BotoConnectionError, HTTPClientError)


@dataclasses.dataclass
class Fault:
    """What the relay does to requests whose request line contains ``match``."""

    match: str
    cut_request_after: int | None = None  # forward this many body bytes, then reset both ends
    cut_response_after: int | None = None  # forward this many response body bytes, then reset
    # The reset waits for this (at most 10 s) after the last forwarded byte, if given.
    cut_when: threading.Event | None = None
    answer: bytes | None = None  # answer this (after reading the body) instead of forwarding
    delay: float = 0.0  # seconds to hold the request before it goes on
    # Give up on the response (close both ends) once the proxy has not read it for this long,
    # as some servers do with a reader that stalls (LocalStack: about a second).
    stall_limit: float | None = None
    times: int | None = None  # how many requests it applies to (None: all)
    hits: int = 0  # requests it applied to
    cuts: int = 0  # connections it reset
    forwarded: int = 0  # request body bytes it let through to the upstream


def http_error(status: int, reason: str, code: str) -> bytes:
    """A complete HTTP response carrying an S3 error document, closing the connection."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>injected by the test relay</Message>"
        "<RequestId>RELAY</RequestId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _reset(sock: socket.socket) -> None:
    """Close with an RST, as a crashed peer or a middlebox would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Connection:
    """One relayed connection, served by one thread (so a reset closes sockets no other thread
    is blocked on). Requests are framed by Content-Length, as the proxy and hvac send them."""

    def __init__(self, relay: FaultRelay, client: socket.socket, upstream: socket.socket) -> None:
        self.relay = relay
        self.client = client
        self.upstream = upstream
        self.inbuf = b""
        self.remaining = 0  # body bytes of the current request not yet read
        self.forwarded = 0  # body bytes of the current request sent upstream
        self.fault: Fault | None = None
        self.response_cut: int | None = None
        self.response_head = b""
        self.response_length: int | None = None
        self.response_seen = 0

    def run(self) -> None:
        try:
            while not self.relay.closed:
                ready, _, _ = select.select([self.client, self.upstream], [], [], 0.5)
                for sock in ready:
                    data = sock.recv(RECV)
                    if not data:
                        return
                    handle = self._from_client if sock is self.client else self._from_upstream
                    if not handle(data):
                        return
        except (OSError, ValueError):
            return
        finally:
            self.client.close()
            self.upstream.close()

    def _cut(self) -> bool:
        if self.fault is not None:
            self.fault.cuts += 1
            if self.fault.cut_when is not None:
                self.fault.cut_when.wait(10)
        _reset(self.upstream)
        _reset(self.client)
        return False

    # ---- proxy -> upstream ---------------------------------------------------------------

    def _from_client(self, data: bytes) -> bool:
        self.inbuf += data
        while self.inbuf:
            if self.remaining:
                piece = self.inbuf[: self.remaining]
                self.inbuf = self.inbuf[len(piece) :]
                self.remaining -= len(piece)
                if not self._body(piece):
                    return False
                continue
            end = self.inbuf.find(b"\r\n\r\n")
            if end < 0:
                return True
            head, self.inbuf = self.inbuf[: end + 4], self.inbuf[end + 4 :]
            if not self._head(head):
                return False
        return True

    def _head(self, head: bytes) -> bool:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        self.remaining = _content_length(head)
        self.forwarded = 0
        fault = self.fault = self.relay.match(line)
        if fault is None:
            self.upstream.sendall(head)
            return True
        if fault.delay:
            time.sleep(fault.delay)
        if fault.answer is not None:
            return True if self.remaining else self._answer(fault.answer)
        if fault.cut_response_after is not None:
            self.response_cut = fault.cut_response_after
            self.response_head, self.response_length, self.response_seen = b"", None, 0
        if fault.stall_limit is not None:
            self.client.settimeout(fault.stall_limit)  # a blocked send raises: the relay ends
        self.upstream.sendall(head)
        return True

    def _body(self, piece: bytes) -> bool:
        fault = self.fault
        if fault is not None and fault.answer is not None:
            return True if self.remaining else self._answer(fault.answer)
        if fault is not None and fault.cut_request_after is not None:
            allowed = fault.cut_request_after - self.forwarded
            if len(piece) >= allowed:
                self.upstream.sendall(piece[:allowed])
                fault.forwarded += allowed
                return self._cut()
        self.upstream.sendall(piece)
        self.forwarded += len(piece)
        if fault is not None:
            fault.forwarded += len(piece)
        return True

    def _answer(self, answer: bytes) -> bool:
        self.client.sendall(answer)
        return False

    # ---- upstream -> proxy ---------------------------------------------------------------

    def _from_upstream(self, data: bytes) -> bool:
        if self.response_cut is None:
            self.client.sendall(data)
            return True
        if self.response_length is None:
            self.response_head += data
            end = self.response_head.find(b"\r\n\r\n")
            if end < 0:
                return True
            head, data = self.response_head[: end + 4], self.response_head[end + 4 :]
            self.response_length = _content_length(head)
            self.client.sendall(head)
        if self.response_length <= self.response_cut:  # too short to cut: pass it on
            self.client.sendall(data)
            self.response_seen += len(data)
            if self.response_seen >= self.response_length:
                self.response_cut = self.response_length = None
            return True
        allowed = self.response_cut - self.response_seen
        if len(data) >= allowed:
            self.client.sendall(data[:allowed])
            return self._cut()
        self.client.sendall(data)
        self.response_seen += len(data)
        return True


class FaultRelay:
    """A loopback relay to ``127.0.0.1:target_port`` that applies its :attr:`faults`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.faults: list[Fault] = []
        self.closed = False
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.5)
        self.port: int = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def match(self, request_line: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.match in request_line and (
                    fault.times is None or fault.hits < fault.times
                ):
                    fault.hits += 1
                    return fault
        return None

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            threading.Thread(target=_Connection(self, client, upstream).run, daemon=True).start()

    def close(self) -> None:
        self.closed = True
        self._listener.close()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].rstrip("/"))


@pytest.fixture
def s3_relay(s3: S3Server) -> Iterator[FaultRelay]:
    relay = FaultRelay(_port(s3.endpoint))
    yield relay
    relay.close()


@pytest.fixture
def relayed_proxy(
    workdir: Path, vault: Vault, s3: S3Server, s3_relay: FaultRelay
) -> Iterator[ProxyProcess]:
    """A proxy whose upstream is moto through :func:`s3_relay` (moto's keys, the relay's
    address: the proxy signs for the address it sends to, so signatures stay valid)."""
    proxy = start_proxy(workdir, vault, dataclasses.replace(s3, endpoint=s3_relay.endpoint))
    yield proxy
    report(proxy)
    proxy.stop()


def report(proxy: ProxyProcess) -> None:
    """The proxy's log, for the record (shown with ``pytest -s`` or on failure)."""
    print(f"\n--- proxy log {proxy.log_path.name} ---\n{proxy.log_text()}")


def failure(call: Callable[[], object]) -> Exception:
    """Run ``call`` and return the error the client saw; fail if it saw none."""
    try:
        call()
    except (ClientError, *CONNECTION_ERRORS) as err:
        seen: Exception = err
        return seen
    pytest.fail("the request succeeded despite the fault")


def describe(err: Exception) -> str:
    if isinstance(err, ClientError):
        meta = err.response["ResponseMetadata"]
        return f"ClientError {meta['HTTPStatusCode']} {err.response['Error']}"
    return f"{type(err).__name__}: {err}"


def assert_server_error_or_cut(err: Exception) -> None:
    """A 5xx S3 error document, or a connection that broke: nothing that looks like success."""
    if isinstance(err, ClientError):
        assert 500 <= err.response["ResponseMetadata"]["HTTPStatusCode"] < 600, describe(err)
        assert err.response["Error"].get("Code"), describe(err)  # an S3 error document
    else:
        assert isinstance(err, CONNECTION_ERRORS), describe(err)


def assert_absent(raw: Any, bucket: str, key: str) -> None:
    with pytest.raises(ClientError) as info:
        raw.head_object(Bucket=bucket, Key=key)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    listed = raw.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert key not in [o["Key"] for o in listed]


def wait_logged(proxy: ProxyProcess, needle: str, timeout: float = 10.0) -> str:
    """The first access-log line of the proxy that mentions ``needle`` and has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in proxy.log_lines():
            message = str(entry.get("message", ""))
            if needle in message and " -> " in message:
                return message
        time.sleep(0.05)
    raise AssertionError(f"the proxy never finished a request for {needle}:\n{proxy.log_text()}")


# ---- 1. the upstream resets the connection in the middle of an upload -------------------------


@pytest.mark.parametrize("attempts", [1, 3])
def test_upstream_reset_mid_put_object_stores_nothing(
    relayed_proxy: ProxyProcess, s3_relay: FaultRelay, bucket: str, raw: Any, attempts: int
) -> None:
    # One attempt shows what each response is; three (boto3's standard retries) the outcome.
    retries = {"mode": "standard", "total_max_attempts": attempts}
    client = relayed_proxy.client(**{**CLIENT, "retries": retries})
    key = "put-cut"
    fault = s3_relay.add(Fault(f"PUT /{bucket}/{key} ", cut_request_after=1 * MiB))
    err = failure(lambda: client.put_object(Bucket=bucket, Key=key, Body=os.urandom(4 * MiB)))
    print(f"\nPutObject ({attempts} attempts), upstream reset after 1 MiB: {describe(err)}")
    assert fault.cuts == attempts  # every attempt reached the relay and was cut
    assert_server_error_or_cut(err)
    assert_absent(raw, bucket, key)
    # The proxy recovers: the same upload goes through once the upstream behaves.
    s3_relay.clear()
    data = os.urandom(2 * MiB)
    client.put_object(Bucket=bucket, Key=key, Body=data)
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == data


def test_upstream_reset_mid_upload_part_stores_no_part(
    relayed_proxy: ProxyProcess, s3_relay: FaultRelay, bucket: str, raw: Any
) -> None:
    client = relayed_proxy.client(**CLIENT)
    key = "part-cut"
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    fault = s3_relay.add(Fault(f"PUT /{bucket}/{key}?", cut_request_after=1 * MiB))
    body = os.urandom(5 * MiB)
    err = failure(
        lambda: client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=body)
    )
    print(f"\nUploadPart with the upstream reset after 1 MiB: {describe(err)}")
    assert fault.cuts == 1
    assert_server_error_or_cut(err)
    assert raw.list_parts(Bucket=bucket, Key=key, UploadId=upload).get("Parts", []) == []
    assert_absent(raw, bucket, key)
    raw.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)


# ---- 2. the upstream resets the connection in the middle of a download -----------------------


@pytest.mark.parametrize(
    ("cut_after", "expected"),
    [
        # After 1 MiB, once the proxy's response has started: the client's read must fail.
        (1 * MiB, "streaming"),
        # Inside the stored header, so before the response started: an S3 error document.
        (100, "error document"),
    ],
)
def test_upstream_reset_mid_get_object_never_yields_a_short_body(
    relayed_proxy: ProxyProcess,
    s3_relay: FaultRelay,
    bucket: str,
    cut_after: int,
    expected: str,
) -> None:
    client = relayed_proxy.client(**CLIENT)
    key = "get-cut"
    data = os.urandom(4 * MiB)
    client.put_object(Bucket=bucket, Key=key, Body=data)
    started = threading.Event() if expected == "streaming" else None
    fault = s3_relay.add(
        Fault(f"GET /{bucket}/{key} ", cut_response_after=cut_after, cut_when=started)
    )
    if started is not None:
        resp = client.get_object(Bucket=bucket, Key=key)  # the proxy's response has started
        started.set()  # now the upstream breaks off
        assert resp["ContentLength"] == len(data)
        with pytest.raises((ResponseStreamingError, IncompleteReadError)) as info:
            got = resp["Body"].read()
            print(f"read {len(got)} of {len(data)} bytes without an error")
        print(f"\nGetObject, upstream reset after {cut_after} bytes: {info.type.__name__}: ")
        print(f"  {info.value}")
    else:
        err = failure(lambda: client.get_object(Bucket=bucket, Key=key)["Body"].read())
        print(f"\nGetObject, upstream reset after {cut_after} bytes: {describe(err)}")
        assert isinstance(err, ClientError), describe(err)
        assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 503, describe(err)
    assert fault.cuts == 1  # (small ranged reads of the stored header pass uncut)
    s3_relay.clear()
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    # A broken connection is the network's fault, not the stored data's: no integrity alarm.
    assert not [line for line in relayed_proxy.log_lines() if line.get("integrity")]


def test_a_cold_multipart_read_does_not_leave_the_whole_object_response_waiting(
    relayed_proxy: ProxyProcess, s3_relay: FaultRelay, client: Any, bucket: str
) -> None:
    """A plain GET of a multipart object this process has not seen: working out its layout
    takes ranged reads (slow here: 0.6 s each), and an upstream that gives up on a response
    nobody reads for a second must not cut the object short meanwhile."""
    parts = [os.urandom(5 * MiB) for _ in range(4)]
    upload_multipart(client, bucket, "cold", parts)  # through another proxy: not cached here
    whole = s3_relay.add(Fault(f"GET /{bucket}/cold ", stall_limit=1.0, times=1))
    slow = s3_relay.add(Fault(f"GET /{bucket}/cold", delay=0.6))
    reader = relayed_proxy.client(**CLIENT)
    assert reader.get_object(Bucket=bucket, Key="cold")["Body"].read() == b"".join(parts)
    assert whole.hits == 1 and slow.hits >= 2
    assert not [line for line in relayed_proxy.log_lines() if line.get("severity") == "ERROR"]


# ---- 3. the client disconnects in the middle of an upload ------------------------------------


@pytest.mark.parametrize("sent", ["half", "all but one byte"])
def test_client_disconnect_mid_upload_stores_nothing(
    relayed_proxy: ProxyProcess, s3_relay: FaultRelay, bucket: str, raw: Any, sent: str
) -> None:
    key = f"client-gone-{uuid.uuid4().hex[:8]}"
    length = 4 * MiB
    body = os.urandom(length)
    part = body[: length // 2] if sent == "half" else body[:-1]
    # What the upstream must have received before the client goes: the proxy streams each
    # segment as its plaintext arrives (all but the withheld last one).
    reached = len(part) - 2 * 65536
    watch = s3_relay.add(Fault(f"PUT /{bucket}/{key} "))  # no fault: only counts the bytes
    head = (
        f"PUT /{bucket}/{key} HTTP/1.1\r\nHost: 127.0.0.1:{relayed_proxy.port}\r\n"
        f"Content-Length: {length}\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", relayed_proxy.port), timeout=10) as sock:
        sock.sendall(head)
        sock.sendall(part)
        deadline = time.monotonic() + 10
        while watch.forwarded < reached and time.monotonic() < deadline:
            time.sleep(0.02)
    line = wait_logged(relayed_proxy, f"/{bucket}/{key}")
    print(f"\nclient gone after {sent} of the body, upstream had {watch.forwarded} bytes: {line}")
    assert watch.forwarded >= reached  # the upstream really had a partial upload
    assert_absent(raw, bucket, key)
    # The proxy stays healthy.
    client = relayed_proxy.client(**CLIENT)
    client.put_object(Bucket=bucket, Key=key, Body=b"after the cut")
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"after the cut"


# ---- 4. the upstream answers 500/503, or is down ---------------------------------------------


@pytest.mark.parametrize(
    ("operation", "status", "reason", "code"),
    [
        ("put", 500, "Internal Server Error", "InternalError"),
        ("put", 503, "Slow Down", "SlowDown"),
        ("get", 500, "Internal Server Error", "InternalError"),
        ("get", 503, "Service Unavailable", "ServiceUnavailable"),
    ],
)
def test_upstream_errors_reach_the_client_as_s3_errors(
    relayed_proxy: ProxyProcess,
    s3_relay: FaultRelay,
    bucket: str,
    raw: Any,
    operation: str,
    status: int,
    reason: str,
    code: str,
) -> None:
    client = relayed_proxy.client(**CLIENT)
    key = f"{operation}-{status}"
    data = os.urandom(3 * MiB)
    if operation == "get":
        client.put_object(Bucket=bucket, Key=key, Body=data)
    method = "PUT" if operation == "put" else "GET"
    fault = s3_relay.add(
        Fault(f"{method} /{bucket}/{key} ", answer=http_error(status, reason, code))
    )
    with pytest.raises(ClientError) as info:
        if operation == "put":
            client.put_object(Bucket=bucket, Key=key, Body=data)
        else:
            client.get_object(Bucket=bucket, Key=key)["Body"].read()
    err = info.value.response
    print(f"\n{operation} with the upstream answering {status}: {err['Error']}")
    assert fault.hits == 1
    assert err["ResponseMetadata"]["HTTPStatusCode"] == status
    assert err["Error"]["Code"] == code
    if operation == "put":
        assert_absent(raw, bucket, key)


def test_an_unreachable_upstream_is_503_service_unavailable(
    workdir: Path, vault: Vault, s3: S3Server
) -> None:
    dead = dataclasses.replace(s3, endpoint=f"http://127.0.0.1:{free_port()}")  # nothing listens
    proxy = start_proxy(workdir, vault, dead)
    try:
        client = proxy.client(**CLIENT)
        calls: list[Callable[[], object]] = [
            lambda: client.put_object(Bucket="nowhere", Key="k", Body=os.urandom(MiB)),
            lambda: client.get_object(Bucket="nowhere", Key="k"),
            lambda: client.list_objects_v2(Bucket="nowhere"),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(ClientError) as info:
                call()
            err = info.value.response
            print(f"\nupstream down: {err['ResponseMetadata']['HTTPStatusCode']} {err['Error']}")
            assert err["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert err["Error"]["Code"] == "ServiceUnavailable"
            assert time.monotonic() - started < 10
    finally:
        report(proxy)
        proxy.stop()


# ---- 5. a Vault slower than the proxy's timeout ----------------------------------------------


def test_a_slow_vault_gives_503_and_stores_nothing(
    workdir: Path, vault: Vault, s3: S3Server, bucket: str, raw: Any
) -> None:
    relay = FaultRelay(_port(vault.addr))
    proxy = start_proxy(
        workdir,
        dataclasses.replace(vault, addr=relay.endpoint),
        s3,
        {
            "S3PROXY_VAULT_TIMEOUT": "1",
            "S3PROXY_DATAKEY_REUSE_SECONDS": "0",  # every object asks Vault for its data key
            "S3PROXY_KEY_CACHE_SECONDS": "0",  # every read asks Vault to unwrap
        },
    )
    try:
        client = proxy.client(**CLIENT)
        before = os.urandom(MiB)
        client.put_object(Bucket=bucket, Key="before", Body=before)  # Vault through the relay

        slow = relay.add(Fault("/datakey/", delay=3.0))  # beyond the 1 s timeout (+1 s grace)
        started = time.monotonic()
        with pytest.raises(ClientError) as info:
            client.put_object(Bucket=bucket, Key="slow", Body=os.urandom(MiB))
        took = time.monotonic() - started
        err = info.value.response
        print(f"\nPutObject, Vault datakey delayed 3 s: {err['Error']} after {took:.1f} s")
        assert slow.hits >= 1
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert err["Error"]["Code"] == "ServiceUnavailable"
        assert took < 2.9  # the proxy gave up at its timeout, not when Vault answered
        assert_absent(raw, bucket, "slow")

        relay.add(Fault("/decrypt/", delay=3.0))
        started = time.monotonic()
        with pytest.raises(ClientError) as info:
            client.get_object(Bucket=bucket, Key="before")["Body"].read()
        took = time.monotonic() - started
        err = info.value.response
        print(f"GetObject, Vault decrypt delayed 3 s: {err['Error']} after {took:.1f} s")
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert err["Error"]["Code"] == "ServiceUnavailable"
        assert took < 2.9

        # Once Vault answers in time again, so does the proxy.
        relay.clear()
        after = os.urandom(MiB)
        client.put_object(Bucket=bucket, Key="after", Body=after)
        assert client.get_object(Bucket=bucket, Key="after")["Body"].read() == after
        assert client.get_object(Bucket=bucket, Key="before")["Body"].read() == before
    finally:
        report(proxy)
        proxy.stop()
        relay.close()


# ---- 5. a completion the store cannot bless ----------------------------------------------------
#
# Between the proxy and moto sits an HTTP relay that forwards every request and response as it
# is, except what a hostile store would change: the CompleteMultipartUpload body (a part
# dropped, so the store joins fewer parts and answers 200), or, for a reorder, the part numbers
# of two UploadParts with the ETags ListParts and Complete show for them swapped to match (the
# store keeps two parts in each other's place and hides it). Every rewrite keeps the body's
# length, so the proxy's signature over the headers still verifies; moto takes the signed body
# hash literally (tests/conftest.py). A reorder changes the signed query, so it runs against a
# moto that checks no signatures.

PART_SIZES = [5 * MiB, 5 * MiB, 5 * MiB, 1000]


def _swap(text: bytes, a: bytes, b: bytes) -> bytes:
    return text.replace(a, b"\0").replace(b, a).replace(b"\0", b)


def _drop_part(body: bytes, number: int) -> bytes:
    """The Complete body without part ``number``, padded with spaces to its length."""
    start = body.index(b"<Part><PartNumber>%d</PartNumber>" % number)
    end = body.index(b"</Part>", start) + len(b"</Part>")
    cut = body[:start] + body[end:]
    return cut + b" " * (len(body) - len(cut))


class HostileStore:
    """An aiohttp relay to ``upstream`` (run on its own loop in a thread) that rewrites what
    :attr:`mode` says: ``honest``, ``drop-last``, ``drop-middle`` or ``reorder``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "honest"
        self.etags: dict[int, bytes] = {}  # part number as moto stored it -> its ETag's hex
        self.completes = 0
        self._loop: Any = None
        self._ready = threading.Event()
        self.port = 0
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        import asyncio

        from aiohttp import ClientSession, web

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.content.read()  # (read() stops at 1 MiB)
            path = request.raw_path
            is_part = request.method == "PUT" and "uploadId=" in path and "partNumber=" in path
            if self.mode == "reorder" and is_part:
                path = _swap(path.encode(), b"partNumber=2", b"partNumber=3").decode()
            if request.method == "POST" and "uploadId=" in path:
                self.completes += 1
                body = self._complete_body(body)
            skip = {"content-length", "transfer-encoding"}
            headers = [(k, v) for k, v in request.headers.items() if k.lower() not in skip]
            async with session.request(
                request.method, self.upstream + path, headers=headers, data=body
            ) as resp:
                data = await resp.read()
                out = [
                    (k, v)
                    for k, v in resp.headers.items()
                    if k.lower() not in (*skip, "content-encoding")
                ]
            if is_part and resp.status == 200:
                number = int(path.split("partNumber=")[1].split("&")[0])
                # (hex only: ListParts XML may quote it as &#34;)
                self.etags[number] = resp.headers["ETag"].strip('"').encode()
            if request.method == "GET" and "uploadId=" in path and self.mode == "reorder":
                data = _swap(data, self.etags[2], self.etags[3])  # ListParts hides the swap
            return web.Response(status=resp.status, headers=out, body=data)

        async def main() -> None:
            nonlocal session
            session = ClientSession(auto_decompress=False, skip_auto_headers=("User-Agent",))
            server = web.Server(handle)
            listener = await asyncio.get_running_loop().create_server(server, "127.0.0.1", 0)
            self.port = listener.sockets[0].getsockname()[1]
            self._ready.set()
            await asyncio.Event().wait()

        session: Any = None
        self._loop = asyncio.new_event_loop()
        with contextlib.suppress(RuntimeError):
            self._loop.run_until_complete(main())

    def _complete_body(self, body: bytes) -> bytes:
        if self.mode == "drop-last":
            return _drop_part(body, len(PART_SIZES))
        if self.mode == "drop-middle":
            return _drop_part(body, 2)
        if self.mode == "reorder":  # the proxy names the stored parts as ListParts showed them
            return _swap(body, self.etags[2], self.etags[3])
        return body

    def close(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)


def _manifest_tags(raw: Any, bucket: str, key: str) -> list[str]:
    tags = raw.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return [t["Value"] for t in tags if t["Key"] == "s3proxy-manifest"]


@pytest.fixture(scope="module")
def lax_s3(workdir: Path) -> Iterator[S3Server]:
    """A moto that checks no signatures (the reorder rewrites a signed query)."""
    from s3proxy.devstack import start_s3

    server = start_s3(workdir, enforce_signatures=False)
    yield server
    server.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("completed_by", ["uploader", "another process"])
@pytest.mark.parametrize("mode", ["honest", "drop-last", "drop-middle", "reorder"])
def test_a_store_that_completes_other_parts_gets_no_manifest_and_no_reads(
    workdir: Path, vault: Vault, s3: S3Server, lax_s3: S3Server, mode: str, completed_by: str
) -> None:
    store = lax_s3 if mode == "reorder" else s3
    hostile = HostileStore(store.endpoint)
    relayed = dataclasses.replace(store, endpoint=hostile.endpoint)
    one = {"S3PROXY_WORKERS": "1"}  # the parts this process sealed are the point
    uploader = start_proxy(workdir, vault, relayed, one)
    completer = start_proxy(workdir, vault, relayed, one) if completed_by != "uploader" else None
    fresh = start_proxy(workdir, vault, store)  # a proxy that never saw the upload
    raw = store.client()
    bucket, key = f"t-{uuid.uuid4().hex[:12]}", "backup.tar"
    raw.create_bucket(Bucket=bucket)
    try:
        client = uploader.client(**CLIENT)
        parts = [os.urandom(n) for n in PART_SIZES]
        uid = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        hostile.mode = mode  # (a reorder starts with the UploadParts)
        listed = [
            {"PartNumber": i + 1, "ETag": client.upload_part(
                Bucket=bucket, Key=key, UploadId=uid, PartNumber=i + 1, Body=p
            )["ETag"]}
            for i, p in enumerate(parts)
        ]  # fmt: skip
        via = (completer or uploader).client(**CLIENT)
        complete = lambda: via.complete_multipart_upload(  # noqa: E731
            Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": listed}
        )
        reader = fresh.client(**CLIENT)
        if mode == "honest":
            complete()
            assert reader.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(parts)
            assert len(_manifest_tags(raw, bucket, key)) == 1
            return
        err = failure(complete)
        print(f"\n{mode}, completed by the {completed_by}: {describe(err)}")
        assert hostile.completes == 1  # the store completed (and answered 200) once
        assert isinstance(err, ClientError), describe(err)
        status = err.response["ResponseMetadata"]["HTTPStatusCode"]
        # The store joined other streams (500, an integrity error), or, where the completing
        # process did not seal the part, a stream other than the one whose ETag was named there
        # (400 InvalidPart, as S3 answers a wrong part ETag).
        if status == 400:
            assert (mode, completed_by) == ("reorder", "another process"), describe(err)
            assert err.response["Error"]["Code"] == "InvalidPart"
        else:
            assert status == 500, describe(err)
            logged = (completer or uploader).log_lines()
            assert any(e.get("integrity") for e in logged), "no integrity failure logged"
        assert raw.head_object(Bucket=bucket, Key=key)  # the store did complete something
        assert _manifest_tags(raw, bucket, key) == []
        with pytest.raises(ClientError) as refused:
            reader.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    finally:
        for p in (uploader, completer, fresh):
            if p is not None:
                report(p)
                p.stop()
        hostile.close()
