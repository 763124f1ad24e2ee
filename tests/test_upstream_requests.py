"""How many upstream requests each client request costs (issue 10), counted on the proxy side
by its ``s3proxy_upstream_request_duration_seconds`` metric; and that the reads that skip a
probe or a trailer read still refuse objects changed, tampered with or swapped in the store.

Two proxy processes share the store: what one process learnt (a layout it wrote or read) is
never what the other relies on (docs/design.md, Reading without a probe)."""

from __future__ import annotations

import os
import queue
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, IncompleteReadError, ResponseStreamingError

from s3proxy.devstack import S3Server, Vault, free_port, start_s3
from tests.conftest import ProxyProcess, start_proxy
from tests.test_metrics import scrape, value

pytestmark = pytest.mark.timeout(180)

MiB = 1024 * 1024


class Counted:
    """A proxy process and its upstream request count."""

    def __init__(self, proxy: ProxyProcess, admin: int) -> None:
        self.proxy = proxy
        self.admin = admin
        self.client = proxy.client(retries={"total_max_attempts": 1})

    def count(self) -> dict[str, int]:
        samples = scrape(self.admin)
        name = "s3proxy_upstream_request_duration_seconds_count"
        return {
            m: int(value(samples, name, method=m)) for m in ("GET", "HEAD", "PUT", "POST", "DELETE")
        }

    def cost(self, action: Any) -> dict[str, int]:
        """Upstream requests by method made while ``action()`` ran (zeros left out)."""
        before = self.count()
        action()
        after = self.count()
        return {m: after[m] - before[m] for m in after if after[m] != before[m]}


@pytest.fixture
def pair(workdir: Path, vault: Vault, s3: S3Server) -> Iterator[tuple[Counted, Counted]]:
    started = []
    for _ in range(2):
        admin = free_port()
        extra = {
            "S3PROXY_ADMIN_LISTEN": f"127.0.0.1:{admin}",
            "S3PROXY_BIND_OBJECT_NAMES": "true",
            "S3PROXY_WORKERS": "1",  # what one process learnt is the point
            # What `auto` learns from moto, without its one-time probe before the first upload
            # (counted in tests/test_upstream_checksums.py): these counts are every request's.
            "S3PROXY_UPSTREAM_CHECKSUM": "crc32",
        }
        p = start_proxy(workdir, vault, s3, extra)
        started.append(Counted(p, admin))
    yield started[0], started[1]
    for c in started:
        c.proxy.stop()


def _body(client: Any, bucket: str, key: str, **kwargs: Any) -> bytes:
    data: bytes = client.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()
    return data


def test_small_objects_read_back_with_one_upstream_request_each(
    pair: tuple[Counted, Counted], bucket: str
) -> None:
    a, b = pair
    data = os.urandom(4096)
    assert a.cost(lambda: a.client.put_object(Bucket=bucket, Key="k", Body=data)) == {"PUT": 1}
    # The process that wrote it knows its layout and trailer.
    assert a.cost(lambda: _body(a.client, bucket, "k") == data) == {"GET": 1}
    assert _body(a.client, bucket, "k") == data
    head = a.client.head_object(Bucket=bucket, Key="k")
    assert a.cost(lambda: a.client.head_object(Bucket=bucket, Key="k")) == {"HEAD": 1}
    # Another process has not seen it: the whole small body is one read, trailer included.
    assert b.cost(lambda: _body(b.client, bucket, "k")) == {"GET": 1}
    assert _body(b.client, bucket, "k") == data
    assert b.client.head_object(Bucket=bucket, Key="k")["ETag"] == head["ETag"]
    assert b.cost(lambda: b.client.head_object(Bucket=bucket, Key="k")) == {"HEAD": 1}
    # Same ETag and checksum from either process, and from the response that read it whole.
    got = b.client.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got["ETag"] == head["ETag"] and got["Body"].read() == data
    assert "ChecksumCRC32" in got
    # HEAD first in the other process: the small object is read whole, header and trailer.
    a.client.put_object(Bucket=bucket, Key="k2", Body=data[:1000])
    cost = b.cost(lambda: b.client.head_object(Bucket=bucket, Key="k2"))
    assert cost == {"HEAD": 1, "GET": 1}, cost
    assert b.client.head_object(Bucket=bucket, Key="k2")["ContentLength"] == 1000
    assert b.cost(lambda: _body(b.client, bucket, "k2")) == {"GET": 1}


def test_ranged_reads_of_a_known_layout_skip_the_probe(
    pair: tuple[Counted, Counted], bucket: str
) -> None:
    a, b = pair
    data = os.urandom(300_000)
    a.client.put_object(Bucket=bucket, Key="r", Body=data)
    etag = a.client.head_object(Bucket=bucket, Key="r")["ETag"]

    def ranged() -> None:
        got = a.client.get_object(Bucket=bucket, Key="r", Range="bytes=70000-200000", IfMatch=etag)
        assert got["Body"].read() == data[70000:200001]
        assert got["ContentRange"] == f"bytes 70000-200000/{len(data)}"
        assert got["ETag"] == etag

    assert a.cost(ranged) == {"GET": 1}
    # The client's conditions are still evaluated on the plaintext ETag.
    with pytest.raises(ClientError) as err:
        a.client.get_object(Bucket=bucket, Key="r", Range="bytes=0-9", IfMatch='"0000"')
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    # Replaced through the other process: the If-Match on the old stored ETag fails upstream,
    # and the read falls back to the probe and serves the new object.
    new = os.urandom(250_000)
    b.client.put_object(Bucket=bucket, Key="r", Body=new)
    got = a.client.get_object(Bucket=bucket, Key="r", Range="bytes=10-19")
    assert got["Body"].read() == new[10:20]
    assert got["ContentRange"] == f"bytes 10-19/{len(new)}"
    # A range past the end of the old object but inside the new one, and the reverse.
    b.client.put_object(Bucket=bucket, Key="r", Body=data)
    assert _body(a.client, bucket, "r", Range="bytes=260000-260009") == data[260000:260010]
    b.client.put_object(Bucket=bucket, Key="r", Body=new)
    with pytest.raises(ClientError) as err:
        a.client.get_object(Bucket=bucket, Key="r", Range="bytes=260000-260009")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


def _upload(client: Any, bucket: str, key: str, parts: list[bytes], via: Any = None) -> str:
    """A multipart upload; its parts through ``client``, Create and Complete through ``via``."""
    via = via or client
    uid = via.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32")["UploadId"]
    etags = [
        client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=uid,
            PartNumber=i + 1,
            Body=p,
            ChecksumAlgorithm="CRC32",
        )
        for i, p in enumerate(parts)
    ]
    done = via.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=uid,
        MultipartUpload={
            "Parts": [
                {"PartNumber": i + 1, "ETag": e["ETag"], "ChecksumCRC32": e["ChecksumCRC32"]}
                for i, e in enumerate(etags)
            ]
        },
    )
    etag: str = done["ETag"]
    assert done.get("ChecksumCRC32"), done
    return etag


def test_multipart_completion_and_downloads_cost_few_requests(
    pair: tuple[Counted, Counted], bucket: str
) -> None:
    a, b = pair
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1000)]
    joined = b"".join(parts)
    # Complete by the process that uploaded every part: ListParts, Complete, the first 256
    # bytes, the header at each of the 3 part boundaries (the object must be exactly the
    # parts listed, in order: docs/format.md), and the manifest tag (read and write). No
    # trailer is read back: the process sealed them.
    complete = {}

    def upload() -> None:
        complete["etag"] = _upload(a.client, bucket, "m", parts)

    cost = a.cost(upload)
    assert cost == {"POST": 2, "PUT": 5, "GET": 3 + 3}, cost  # PUT: 4 parts + the tag
    etag = complete["etag"]
    # A download as boto3's download_file makes it: HEAD, then ranged GETs If-Match the ETag.
    head = a.client.head_object(Bucket=bucket, Key="m", ChecksumMode="ENABLED")
    assert head["ETag"] == etag and head["ContentLength"] == len(joined)

    def download(client: Any) -> None:
        assert client.head_object(Bucket=bucket, Key="m")["ETag"] == etag
        for first in range(0, len(joined), 4 * MiB):
            last = min(first + 4 * MiB, len(joined)) - 1
            got = _body(client, bucket, "m", Range=f"bytes={first}-{last}", IfMatch=etag)
            assert got == joined[first : last + 1]

    assert a.cost(lambda: download(a.client)) == {"HEAD": 1, "GET": 4}
    # The other process reads it back: one ranged read per part boundary (the trailer before
    # it and the header after it), one for the last trailer, the manifest tag.
    cost = b.cost(lambda: b.client.head_object(Bucket=bucket, Key="m"))
    assert cost == {"HEAD": 1, "GET": 1 + 3 + 1 + 1}, cost
    seen = b.client.head_object(Bucket=bucket, Key="m", ChecksumMode="ENABLED")
    for field in ("ETag", "ContentLength", "ChecksumCRC32", "ChecksumType"):
        assert seen.get(field) == head.get(field), field
    assert b.cost(lambda: download(b.client)) == {"HEAD": 1, "GET": 4}
    # Parts uploaded through one process, completed through the other: read back, same answer.
    other = _upload(a.client, bucket, "m2", parts, via=b.client)
    assert other == etag
    assert _body(a.client, bucket, "m2") == joined


# ---- the fast paths still refuse what the store changed ----------------------------------------


def _fails(call: Any) -> None:
    """A refusal: an S3 error of 500 (integrity) or a body cut short; never bytes."""
    with pytest.raises((ClientError, ResponseStreamingError, IncompleteReadError)) as err:
        resp = call()
        if "Body" in resp:
            resp["Body"].read()
    if isinstance(err.value, ClientError):
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def _every_read_fails(client: Any, bucket: str, key: str, middle: int) -> None:
    """The whole object and a range around the stored byte ``middle`` (in plaintext terms,
    give or take a segment) are refused."""
    _fails(lambda: client.get_object(Bucket=bucket, Key=key))
    first, last = max(0, middle - 70_000), middle + 70_000
    _fails(lambda: client.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}"))


def test_objects_changed_in_the_store_after_the_proxy_cached_them_fail(
    pair: tuple[Counted, Counted], raw: Any, bucket: str
) -> None:
    a, _ = pair
    size = 300_000
    for key in ("flip", "one", "two", "small"):
        body = os.urandom(size if key != "small" else 4000)
        a.client.put_object(Bucket=bucket, Key=key, Body=body)
        a.client.get_object(Bucket=bucket, Key=key, Range="bytes=0-0")["Body"].read()
    # A segment's byte flipped.
    stored, meta = (lambda g: (bytearray(g["Body"].read()), g["Metadata"]))(
        raw.get_object(Bucket=bucket, Key="flip")
    )
    stored[len(stored) // 2] ^= 1
    raw.put_object(Bucket=bucket, Key="flip", Body=bytes(stored), Metadata=meta)
    _every_read_fails(a.client, bucket, "flip", size // 2)
    # Another object's ciphertext (and metadata) under this name (names are bound).
    other = raw.get_object(Bucket=bucket, Key="two")
    raw.put_object(Bucket=bucket, Key="one", Body=other["Body"].read(), Metadata=other["Metadata"])
    _every_read_fails(a.client, bucket, "one", size // 2)
    _fails(lambda: a.client.head_object(Bucket=bucket, Key="one"))
    # A small object cut short, and its trailer's byte flipped: the whole-body read refuses it.
    got = raw.get_object(Bucket=bucket, Key="small")
    small, meta = got["Body"].read(), got["Metadata"]
    raw.put_object(Bucket=bucket, Key="small", Body=small[:-1], Metadata=meta)
    _every_read_fails(a.client, bucket, "small", 10)
    raw.put_object(
        Bucket=bucket,
        Key="small",
        Body=small[:-20] + bytes([small[-20] ^ 1]) + small[-19:],
        Metadata=meta,
    )
    _every_read_fails(a.client, bucket, "small", 10)
    _fails(lambda: a.client.head_object(Bucket=bucket, Key="small"))


class LyingUpstream:
    """A loopback relay in front of an S3 server that lies about the stored object: every
    ``If-Match`` is removed from the requests and every ``ETag`` in the responses (headers and
    XML) is one constant, so the proxy's cache keys, conditional reads and ``If-Match`` checks
    all see "the same object" whatever the store holds."""

    ETAG = b'"00000000000000000000000000000000"'

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            methods: queue.Queue[bytes] = queue.Queue()
            threading.Thread(
                target=self._requests, args=(client, upstream, methods), daemon=True
            ).start()
            threading.Thread(
                target=self._responses, args=(upstream, client, methods), daemon=True
            ).start()

    @staticmethod
    def _head(reader: Any) -> list[bytes]:
        head = []
        while (line := reader.readline()) not in (b"\r\n", b""):
            head.append(line)
        return head

    @staticmethod
    def _length(head: list[bytes]) -> int:
        for h in head:
            if h.lower().startswith(b"content-length:"):
                return int(h.split(b":", 1)[1])
        return 0

    def _requests(self, src: socket.socket, dst: socket.socket, methods: Any) -> None:
        reader = src.makefile("rb")
        try:
            while head := self._head(reader):
                methods.put(head[0].split(b" ", 1)[0])
                kept = [h for h in head if not h.lower().startswith(b"if-match:")]
                dst.sendall(b"".join(kept) + b"\r\n")
                length = self._length(kept)
                while length:
                    piece = reader.read(min(length, 65536))
                    if not piece:
                        return
                    dst.sendall(piece)
                    length -= len(piece)
        except OSError:
            return
        finally:
            dst.close()

    def _responses(self, src: socket.socket, dst: socket.socket, methods: Any) -> None:
        reader = src.makefile("rb")
        try:
            while head := self._head(reader):
                method = methods.get(timeout=30)
                status = int(head[0].split()[1])
                chunked = any(h.lower().startswith(b"transfer-encoding: chunked") for h in head)
                body = b""
                if method != b"HEAD" and status not in (204, 304):
                    if chunked:
                        while True:
                            size = int(reader.readline().split(b";")[0], 16)
                            body += reader.read(size)
                            reader.readline()
                            if not size:
                                reader.readline()
                                break
                    else:
                        body = reader.read(self._length(head))
                if body.lstrip().startswith(b"<?xml"):
                    body = re.sub(rb"<ETag>[^<]*</ETag>", b"<ETag>" + self.ETAG + b"</ETag>", body)
                    body = body.replace(b"&#34;", b"")
                kept = [
                    h
                    for h in head[1:]
                    if not h.lower().startswith(
                        (b"etag:", b"content-length:", b"transfer-encoding:")
                    )
                ]
                if any(h.lower().startswith(b"etag:") for h in head):
                    kept.append(b"ETag: " + self.ETAG + b"\r\n")
                length = self._length(head) if method == b"HEAD" else len(body)
                if status not in (204, 304):
                    kept.append(b"Content-Length: %d\r\n" % length)
                dst.sendall(head[0] + b"".join(kept) + b"\r\n" + body)
        except (OSError, queue.Empty):
            return
        finally:
            dst.close()

    def close(self) -> None:
        self._listener.close()


def test_a_store_that_lies_about_etags_never_gets_unauthenticated_bytes_to_a_client(
    workdir: Path, vault: Vault
) -> None:
    """The cached layouts are keyed by the stored ETag and confirmed with ``If-Match``; a store
    that keeps one ETag for every content and ignores ``If-Match`` defeats both, and still only
    gets refusals: every segment is authenticated under the cached stream's key."""
    moto = start_s3(workdir, enforce_signatures=False)
    relay = LyingUpstream(int(moto.endpoint.rsplit(":", 1)[1]))
    lying = S3Server(moto.process, f"http://127.0.0.1:{relay.port}", "k", "s")
    proxy = start_proxy(
        workdir, vault, lying, {"S3PROXY_BIND_OBJECT_NAMES": "true", "S3PROXY_WORKERS": "1"}
    )
    try:
        client = proxy.client(retries={"total_max_attempts": 1})
        raw = moto.client()
        client.create_bucket(Bucket="lies")
        size = 300_000
        bodies = {key: os.urandom(size) for key in ("flip", "one", "two")}
        for key, body in bodies.items():
            client.put_object(Bucket="lies", Key=key, Body=body)
            assert client.head_object(Bucket="lies", Key=key)["ContentLength"] == size
            got = client.get_object(Bucket="lies", Key=key, Range="bytes=0-9")
            assert got["Body"].read() == body[:10]
        got = raw.get_object(Bucket="lies", Key="flip")
        stored, meta = bytearray(got["Body"].read()), got["Metadata"]
        stored[len(stored) // 2] ^= 1
        raw.put_object(Bucket="lies", Key="flip", Body=bytes(stored), Metadata=meta)
        other = raw.get_object(Bucket="lies", Key="two")
        raw.put_object(
            Bucket="lies", Key="one", Body=other["Body"].read(), Metadata=other["Metadata"]
        )
        for key in ("flip", "one"):
            _every_read_fails(client, "lies", key, size // 2)
        # Unchanged objects still read.
        assert client.get_object(Bucket="lies", Key="two")["Body"].read() == bodies["two"]
    finally:
        proxy.stop()
        relay.close()
        moto.stop()


def test_a_part_uploaded_again_through_another_process_is_read_back_at_completion(
    pair: tuple[Counted, Counted], bucket: str
) -> None:
    """The parts a process remembers count only where ListParts shows the stored ETag its own
    UploadPart was answered: a part replaced through another process is read back."""
    a, b = pair
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1000)]
    uid = a.client.create_multipart_upload(Bucket=bucket, Key="again")["UploadId"]
    etags = [
        a.client.upload_part(Bucket=bucket, Key="again", UploadId=uid, PartNumber=i + 1, Body=p)[
            "ETag"
        ]
        for i, p in enumerate(parts)
    ]
    parts[1] = os.urandom(5 * MiB)
    etags[1] = b.client.upload_part(
        Bucket=bucket, Key="again", UploadId=uid, PartNumber=2, Body=parts[1]
    )["ETag"]

    result: dict[str, str] = {}

    def complete() -> None:
        done = a.client.complete_multipart_upload(
            Bucket=bucket,
            Key="again",
            UploadId=uid,
            MultipartUpload={
                "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]
            },
        )
        result["etag"] = done["ETag"]

    cost = a.cost(complete)
    # ListParts, the first 256 bytes, 2 part boundaries (with the replaced part's trailer
    # before the second), the manifest tag; the last part's trailer is the one this process
    # sealed.
    assert cost == {"POST": 1, "GET": 1 + 1 + 2 + 1, "PUT": 1}, cost
    joined = b"".join(parts)
    assert _body(b.client, bucket, "again") == joined
    assert b.client.head_object(Bucket=bucket, Key="again")["ETag"] == result["etag"]
    assert _body(a.client, bucket, "again", Range="bytes=0-99") == joined[:100]
