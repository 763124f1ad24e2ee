"""The playbook itself (tests/playbook.py): it fails a test on a request it did not expect, on
an expected one that never came, on an unsigned one; and its store answers as S3 does. Raw HTTP
against it, no proxy."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator, Mapping

import aiohttp
import pytest

from tests.playbook import ANY, GET, PUT, Playbook, Reply, Store, Unordered

SIGNED = {"Authorization": "AWS4-HMAC-SHA256 Credential=x"}


class Client:
    def __init__(self, book: Playbook) -> None:
        self.book = book
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(book.start())

    def send(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        signed: bool = True,
    ) -> tuple[int, Mapping[str, str], bytes]:
        async def go() -> tuple[int, Mapping[str, str], bytes]:
            sent = {**(SIGNED if signed else {}), **(headers or {})}
            async with (
                aiohttp.ClientSession() as session,
                session.request(method, self.book.endpoint + path, headers=sent, data=body) as r,
            ):
                return r.status, r.headers, await r.read()

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.loop.run_until_complete(self.book.stop())
        self.loop.close()


@pytest.fixture
def client() -> Iterator[Client]:
    store = Store()
    store.create_bucket("b")
    c = Client(Playbook(store))
    yield c
    c.close()


def test_expected_requests_in_order_are_answered_from_the_store(client: Client) -> None:
    client.book.store.put("b", "k", b"0123456789")
    with client.book.expect(GET("/b/k", Range="bytes=2-4"), GET("/b/k", Range="bytes=-3")) as came:
        assert client.send("GET", "/b/k", {"Range": "bytes=2-4"})[2] == b"234"
        status, headers, body = client.send("GET", "/b/k", {"Range": "bytes=-3"})
    assert (status, headers["Content-Range"], body) == (206, "bytes 7-9/10", b"789")
    assert [r.headers["Range"] for r in came] == ["bytes=2-4", "bytes=-3"]


def test_an_unexpected_request_fails_and_is_answered_500(client: Client) -> None:
    client.book.store.put("b", "k", b"x")
    with pytest.raises(AssertionError, match="unexpected"), client.book.expect(GET("/b/k")):
        assert client.send("GET", "/b/k", {"Range": "bytes=0-0"})[0] == 500
    with pytest.raises(AssertionError, match="no request expected"), client.book.expect():
        client.send("GET", "/b/k")
    with pytest.raises(AssertionError, match="If-Match"), client.book.expect(GET("/b/k")):
        client.send("GET", "/b/k", {"If-Match": '"x"'})  # a significant header not named
    with pytest.raises(AssertionError, match="query"), client.book.expect(GET("/b/k")):
        client.send("GET", "/b/k?tagging")


def test_an_expected_request_that_never_came_fails(client: Client) -> None:
    with pytest.raises(AssertionError, match="never came"), client.book.expect(GET("/b/k")):
        pass


def test_an_unsigned_request_fails_even_when_anything_goes(client: Client) -> None:
    client.book.store.put("b", "k", b"x")
    with client.book.anything():
        assert client.send("GET", "/b/k", signed=False)[0] == 500
    with pytest.raises(AssertionError, match="not signed"):
        client.book.check_idle()
    client.book.failures.clear()


def test_unordered_groups_and_scripted_answers(client: Client) -> None:
    client.book.store.put("b", "k", b"abc")
    teapot = Reply(418, (("X-Why", "scripted"),), b"tea")
    with client.book.expect(
        Unordered(GET("/b/k", Range="bytes=0-0"), GET("/b/k", Range="bytes=1-1")),
        GET("/b/k", answer=teapot, If_Match=ANY),
    ):
        assert client.send("GET", "/b/k", {"Range": "bytes=1-1"})[2] == b"b"
        assert client.send("GET", "/b/k", {"Range": "bytes=0-0"})[2] == b"a"
        status, headers, body = client.send("GET", "/b/k", {"If-Match": "*"})
    assert (status, headers["X-Why"], body) == (418, "scripted", b"tea")


def test_the_store_answers_as_s3_does(client: Client) -> None:
    data = b"hello world"
    etag = f'"{hashlib.md5(data).hexdigest()}"'
    with client.book.anything():
        assert client.send("PUT", "/b/k", {"x-amz-meta-a": "1"}, data)[1]["ETag"] == etag
        status, headers, body = client.send("GET", "/b/k")
        assert (status, headers["x-amz-meta-a"], body) == (200, "1", data)
        assert client.send("HEAD", "/b/k")[1]["Content-Length"] == str(len(data))
        assert client.send("GET", "/b/k", {"If-None-Match": etag})[0] == 304
        assert client.send("GET", "/b/k", {"If-Match": '"other"'})[0] == 412
        assert client.send("GET", "/b/k", {"Range": "bytes=11-"})[0] == 416
        assert client.send("PUT", "/b/k", {"If-None-Match": "*"}, b"x")[0] == 412
        assert client.send("PUT", "/b/new", {"If-Match": etag}, b"x")[0] == 404
        assert client.send("GET", "/b/missing")[0] == 404
        # aws-chunked with a trailing CRC32, checked.
        framed = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n"
        chunked = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "5"}
        assert client.send("PUT", "/b/c", chunked, framed)[0] == 200
        assert client.book.store.get("b", "c").data == b"hello"
        wrong = framed.replace(b"NhCmhg==", b"AAAAAA==")
        assert client.send("PUT", "/b/c", chunked, wrong)[2].count(b"BadDigest") == 1
        # Multipart: create, parts, list, complete with the parts' ETags.
        created = client.send("POST", "/b/m?uploads", {"x-amz-tagging": "t=1"})[2]
        uid = created.split(b"<UploadId>")[1].split(b"</UploadId>")[0].decode()
        etags = [
            client.send("PUT", f"/b/m?partNumber={n}&uploadId={uid}", body=p)[1]["ETag"]
            for n, p in ((1, b"ab"), (2, b"cd"))
        ]
        assert client.send("GET", f"/b/m?uploadId={uid}")[2].count(b"<Part>") == 2
        parts = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"
            for n, e in enumerate(etags, start=1)
        )
        done = client.send(
            "POST",
            f"/b/m?uploadId={uid}",
            body=f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode(),
        )
        assert done[0] == 200 and b'-2"' in done[2].replace(b"&quot;", b'"')
        assert client.book.store.get("b", "m").data == b"abcd"
        assert b"<Key>t</Key>" in client.send("GET", "/b/m?tagging")[2]
        listing = client.send("GET", "/b?list-type=2&prefix=m")[2]
        assert b"<Key>m</Key>" in listing and b"<Key>k</Key>" not in listing
    assert [r.method for r in client.book.received][:2] == ["PUT", "GET"]


def test_a_cut_body_is_recorded_as_such(client: Client) -> None:
    async def cut() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", client.book.port)
        writer.write(
            b"PUT /b/k HTTP/1.1\r\nHost: x\r\nAuthorization: x\r\nContent-Length: 10\r\n\r\nabc"
        )
        await writer.drain()
        writer.close()
        await asyncio.sleep(0.2)

    with client.book.expect(PUT("/b/k", complete=False)):
        client.loop.run_until_complete(cut())
    assert "k" not in client.book.store.buckets["b"]
