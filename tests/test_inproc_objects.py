"""What is stored under a key, as the proxy's ObjectInspector finds it (probes, layouts,
trailers, the per-process caches), in process against the playbook's fake upstream: a cached
layout skips the reads that found it, an object changed in the store (another stored ETag) is
inspected again, and a store that serves other bytes than it should (tampered, swapped, under an
ETag it lies about, ignoring ``If-Match`` or ``Range``) gets refusals, never unauthenticated
plaintext (docs/design.md, Reading without a probe)."""

from __future__ import annotations

import dataclasses
import logging
import os

import pytest
from botocore.exceptions import ClientError
from multidict import CIMultiDict, CIMultiDictProxy

from s3proxy.core.sizes import DEFAULT_SEGMENT_SIZE, FOOTER_SIZE, HEADER_SIZE, ciphertext_length
from tests.inproc import Answered, Harness, InProcProxy, ObjectInfo, ObjectInspector, Target
from tests.playbook import GET, Received, Reply, Store

S = DEFAULT_SEGMENT_SIZE
SEG = S + 16  # a stored segment
FIRST = f"bytes=0-{HEADER_SIZE - 1}"


def stored(n: int) -> int:
    return ciphertext_length(n, S, 3)  # a PutObject's stream (format v3)


def trailer(end: int) -> str:
    """The range of the footer (v3) of a PutObject's stream ending at ``end``."""
    return f"bytes={end - FOOTER_SIZE}-{end - 1}"


def put(proxy: InProcProxy, key: str, data: bytes) -> str:
    with proxy.harness.book.anything():
        etag: str = proxy.client.put_object(Bucket="b", Key=key, Body=data)["ETag"]
    return etag


def rewrite(store: Store, key: str, data: bytes, like: str | None = None) -> None:
    """Another writer of the bucket stores ``data`` under ``key`` with the metadata of
    ``like`` (default: the object's own): a new stored ETag."""
    meta = store.get("b", like or key).headers
    store.put("b", key, data)
    store.get("b", key).headers = list(meta)


def refused(answer: Answered, plaintext: bytes) -> None:
    """An S3 error, or a body cut short that holds only a prefix of the plaintext (segments
    authenticated before the failing one): never a complete answer, never other bytes."""
    if answer.status >= 500:
        assert answer.body.startswith(b"<?xml") and b"InternalError" in answer.body
        return
    assert answer.status in (200, 206) and not answer.complete, answer.status
    assert plaintext.find(answer.body) >= 0 if answer.body else True


def probed(harness: Harness, objects: ObjectInspector, target: Target) -> ObjectInfo:
    """What ``objects.probing`` finds of an object the proxy wrote."""

    async def probe() -> ObjectInfo | None:
        async with objects.probing(target, []) as found:
            return found.info

    info = harness.run(probe())
    assert info is not None
    return info


# ---- the caches --------------------------------------------------------------------------------


def test_a_cached_layout_skips_the_reads_that_found_it(harness: Harness) -> None:
    writer = harness.proxy()
    data = os.urandom(300_000)
    put(writer, "k", data)
    etag = harness.store.get("b", "k").etag
    target = Target("b", "k", ())
    # The writer's inspector holds the layout it sealed: the probe alone.
    with harness.book.expect(GET("/b/k", Range=FIRST)):
        info = probed(harness, writer.objects, target)
    assert info is writer.objects.cached(target, etag, stored(300_000), None)
    assert info.size == 300_000
    # An inspector that has not seen it reads the trailer too, and caches what it read.
    fresh = harness.inspector(writer)
    assert fresh.cached(target, etag, None, None) is None and fresh.last_seen(target) is None
    with harness.book.expect(
        GET("/b/k", Range=FIRST), GET("/b/k", Range=trailer(stored(300_000)), If_Match=etag)
    ):
        found = probed(harness, fresh, target)
    assert (found.size, found.etag) == (info.size, info.etag)
    assert fresh.last_seen(target) == (etag, found)
    # Under another stored size, or with another first header, the cached entry is not it.
    assert fresh.cached(target, etag, stored(300_000) + 1, None) is None
    another = dataclasses.replace(info.layout.streams[0].header, salt=bytes(16))
    assert fresh.cached(target, etag, None, another) is None
    assert fresh.cached(target, etag, None, info.layout.streams[0].header) is found


def test_an_object_changed_in_the_store_is_inspected_again(harness: Harness) -> None:
    reader, other = harness.proxy(), harness.proxy()
    one, two, three = os.urandom(300_000), os.urandom(270_000), os.urandom(280_000)
    put(other, "k", one)
    with harness.book.anything():
        assert reader.client.get_object(Bucket="b", Key="k")["Body"].read() == one
    old = harness.store.get("b", "k").etag
    put(other, "k", two)  # through another process: a new stored ETag
    assert harness.store.get("b", "k").etag != old
    # HEAD: the object's end, whose footer holds the new content's facts.
    with harness.book.expect(GET("/b/k", Range=f"bytes=-{FOOTER_SIZE}")):
        assert reader.client.head_object(Bucket="b", Key="k")["ContentLength"] == 270_000
    target = Target("b", "k", ())
    assert reader.objects.cached(target, old, None, None) is None  # the old content dropped
    put(other, "k", three)
    newest = harness.store.get("b", "k").etag
    # The HEAD cached nothing (its footer has no wrapped key): a ranged read probes.
    with harness.book.expect(
        GET("/b/k", Range=FIRST),
        GET("/b/k", Range=trailer(stored(280_000)), If_Match=newest),
        GET("/b/k", Range=f"bytes={HEADER_SIZE}-{HEADER_SIZE + SEG - 1}", If_Match=newest),
    ):
        got = reader.client.get_object(Bucket="b", Key="k", Range="bytes=10-19")
        assert got["Body"].read() == three[10:20]
    # A whole read whose first header is not the cached one's reads the layout again.
    put(other, "k", one)
    with harness.book.expect(
        GET("/b/k"),
        GET("/b/k", Range=trailer(stored(300_000)), If_Match=harness.store.get("b", "k").etag),
    ):
        assert reader.client.get_object(Bucket="b", Key="k")["Body"].read() == one
    # A range past the end of the new object (inside the one last seen), and the reverse.
    put(other, "k", two)
    with harness.book.anything(), pytest.raises(ClientError) as err:
        reader.client.get_object(Bucket="b", Key="k", Range="bytes=275000-275009")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    put(other, "k", one)
    with harness.book.anything():
        got = reader.client.get_object(Bucket="b", Key="k", Range="bytes=290000-290009")
        assert got["Body"].read() == one[290000:290010]


def test_a_span_answered_under_another_etag_is_dropped_and_the_read_probes(
    harness: Harness,
) -> None:
    writer = harness.proxy()
    data = os.urandom(300_000)
    put(writer, "k", data)
    etag = harness.store.get("b", "k").etag
    span = f"bytes={HEADER_SIZE}-{HEADER_SIZE + SEG - 1}"

    def other_etag(got: Received) -> Reply:
        return harness.store.handle(got).with_headers(ETag='"0123456789abcdef0123456789abcdef"')

    # (The probe then finds the layout cached under the ETag the store shows: no trailer.)
    with harness.book.expect(
        GET("/b/k", answer=other_etag, Range=span, If_Match=etag),
        GET("/b/k", Range=FIRST),
        GET("/b/k", Range=span, If_Match=etag),
    ):
        got = writer.client.get_object(Bucket="b", Key="k", Range="bytes=0-9")
        assert got["Body"].read() == data[:10]


# ---- stores that serve other bytes -------------------------------------------------------------


def test_objects_changed_in_the_store_after_the_proxy_cached_them_fail(harness: Harness) -> None:
    """Rewritten by another writer of the bucket (new stored ETags): a flipped byte, another
    object's ciphertext and metadata under the name (names bound), a small object cut short
    or its trailer flipped. Whole and ranged reads and HEAD refuse them."""
    proxy = harness.proxy(S3PROXY_BIND_OBJECT_NAMES="true")
    size = 300_000
    bodies = {key: os.urandom(size if key != "small" else 4000) for key in ("flip", "one", "two")}
    bodies["small"] = os.urandom(4000)
    for key, data in bodies.items():
        put(proxy, key, data)
        with harness.book.anything():
            assert proxy.client.get_object(Bucket="b", Key=key, Range="bytes=0-0")
    flipped = bytearray(harness.store.get("b", "flip").data)
    flipped[len(flipped) // 2] ^= 1
    rewrite(harness.store, "flip", bytes(flipped))
    rewrite(harness.store, "one", harness.store.get("b", "two").data, like="two")
    small = harness.store.get("b", "small").data
    with harness.book.anything():
        every_read_fails(proxy, "flip", bodies["flip"], size // 2)
        every_read_fails(proxy, "one", bodies["one"], size // 2)
        assert proxy.request("HEAD", "/b/one").status == 500
        rewrite(harness.store, "small", small[:-1])
        every_read_fails(proxy, "small", bodies["small"], 10)
        rewrite(harness.store, "small", small[:-20] + bytes([small[-20] ^ 1]) + small[-19:])
        every_read_fails(proxy, "small", bodies["small"], 10)
        assert proxy.request("HEAD", "/b/small").status == 500
        # Unchanged objects still read.
        assert proxy.request("GET", "/b/two").body == bodies["two"]


def every_read_fails(proxy: InProcProxy, key: str, plaintext: bytes, middle: int) -> None:
    """The whole object and a range around plaintext byte ``middle`` are refused."""
    refused(proxy.request("GET", f"/b/{key}"), plaintext)
    first, last = max(0, middle - 70_000), middle + 70_000
    refused(proxy.request("GET", f"/b/{key}", {"Range": f"bytes={first}-{last}"}), plaintext)


class LyingStore:
    """A store that lies about what it holds: every ``If-Match`` is ignored and every ETag it
    shows (headers and XML) is one constant, so the proxy's cache keys, conditional reads and
    ``If-Match`` checks all see "the same object" whatever it holds."""

    ETAG = '"00000000000000000000000000000000"'

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def handle(self, got: Received) -> Reply:
        headers = CIMultiDict((k, v) for k, v in got.headers.items() if k.lower() != "if-match")
        reply = self.inner.handle(dataclasses.replace(got, headers=CIMultiDictProxy(headers)))
        if reply.header("ETag") is not None:
            reply = reply.with_headers(ETag=self.ETAG)
        if reply.body.lstrip().startswith(b"<?xml"):
            text = reply.body.decode()
            for obj in self.inner.buckets["b"].values():
                text = text.replace(obj.etag.replace('"', "&quot;"), self.ETAG)
                text = text.replace(obj.etag, self.ETAG)
            reply = dataclasses.replace(reply, body=text.encode())
        return reply


def test_a_store_that_lies_about_etags_never_gets_unauthenticated_bytes_to_a_client(
    harness: Harness,
) -> None:
    """The cached layouts are keyed by the stored ETag and confirmed with ``If-Match``; a store
    that keeps one ETag for every content and ignores ``If-Match`` defeats both, and still only
    gets refusals: every segment is authenticated under the cached stream's key."""
    proxy = harness.proxy(S3PROXY_BIND_OBJECT_NAMES="true")
    harness.book.store = LyingStore(harness.store)  # type: ignore[assignment]
    size = 300_000
    bodies = {key: os.urandom(size) for key in ("flip", "one", "two")}
    with harness.book.anything():
        for key, data in bodies.items():
            proxy.client.put_object(Bucket="b", Key=key, Body=data)
            assert proxy.client.head_object(Bucket="b", Key=key)["ContentLength"] == size
            got = proxy.client.get_object(Bucket="b", Key=key, Range="bytes=0-9")
            assert got["Body"].read() == data[:10]
    flip = harness.store.get("b", "flip")
    changed = bytearray(flip.data)
    changed[len(changed) // 2] ^= 1
    flip.data = bytes(changed)  # (the ETag S3 shows is a lie anyway)
    two = harness.store.get("b", "two")
    harness.store.get("b", "one").data = two.data
    harness.store.get("b", "one").headers = list(two.headers)
    with harness.book.anything():
        for key in ("flip", "one"):
            every_read_fails(proxy, key, bodies[key], size // 2)
        assert proxy.request("GET", "/b/two").body == bodies["two"]


def test_a_footer_that_is_not_the_streams_fails(harness: Harness) -> None:
    """Another object's footer at the end of this one: a read (which checks the footer against
    the header it read) refuses it; a HEAD, which reads the footer alone, refuses it where the
    names are bound (unbound, the store could as well swap the whole object: docs/format.md)."""
    writer, reader = harness.proxy(), harness.proxy()
    bound = harness.proxy(S3PROXY_BIND_OBJECT_NAMES="true")
    data, other = os.urandom(300_000), os.urandom(300_000)
    put(writer, "k", data)
    put(bound, "bound", data)
    put(bound, "other", other)
    etag = harness.store.get("b", "k").etag
    foreign = harness.store.get("b", "other").data[-FOOTER_SIZE:]

    def swapped(got: Received) -> Reply:
        return dataclasses.replace(harness.store.handle(got), body=foreign)

    with harness.book.expect(
        GET("/b/k", Range=FIRST),
        GET("/b/k", answer=swapped, Range=trailer(stored(300_000)), If_Match=etag),
    ):
        assert reader.request("GET", "/b/k", {"Range": "bytes=0-9"}).status == 500
    target = Target("b", "k", ())
    assert reader.objects.cached(target, etag, None, None) is None  # nothing learnt
    with harness.book.expect(GET("/b/bound", answer=swapped, Range=f"bytes=-{FOOTER_SIZE}")):
        assert harness.proxy(S3PROXY_BIND_OBJECT_NAMES="true").request(
            "HEAD", "/b/bound"
        ).status in (403, 500)


class IgnoringRange:
    """A store that answers every read whole, whatever ``Range`` asks."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def handle(self, got: Received) -> Reply:
        headers = CIMultiDict((k, v) for k, v in got.headers.items() if k.lower() != "range")
        return self.inner.handle(dataclasses.replace(got, headers=CIMultiDictProxy(headers)))


def test_an_upstream_that_ignores_range_still_reads_exactly(harness: Harness) -> None:
    """Answered 200 with the whole stored object where a range was asked: the header, the
    trailers and the segments are cut out of it."""
    writer, reader = harness.proxy(), harness.proxy()
    data = os.urandom(300_000)
    put(writer, "k", data)

    harness.book.store = IgnoringRange(harness.store)  # type: ignore[assignment]
    with harness.book.anything() as came:
        got = reader.client.get_object(Bucket="b", Key="k", Range="bytes=100000-100009")
        assert got["Body"].read() == data[100000:100010]
        assert got["ContentRange"] == f"bytes 100000-100009/{len(data)}"
        assert reader.client.head_object(Bucket="b", Key="k")["ContentLength"] == len(data)
    assert any("Range" in r.headers for r in came)  # (it did ask for ranges)


# ---- tampered streams --------------------------------------------------------------------------


def _integrity_errors(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if getattr(r, "integrity", False))


@pytest.mark.parametrize(
    "tamper",
    [
        "flip-first-segment",
        "flip-late-segment",
        "flip-header",
        "remove-segment",
        "truncate",
        "truncate-segment-boundary",
    ],
)
def test_tampered_objects_fail_visibly(
    harness: Harness, caplog: pytest.LogCaptureFixture, tamper: str
) -> None:
    proxy = harness.proxy()
    data = os.urandom(40 * S + 123)
    put(proxy, "t", data)
    blob = bytearray(harness.store.get("b", "t").data)
    if tamper == "flip-first-segment":
        blob[HEADER_SIZE + 10] ^= 1
    elif tamper == "flip-late-segment":
        blob[HEADER_SIZE + 30 * SEG + 7] ^= 0x40
    elif tamper == "flip-header":
        blob[25] ^= 1  # inside the salt
    elif tamper == "remove-segment":
        del blob[HEADER_SIZE + 5 * SEG : HEADER_SIZE + 6 * SEG]
    elif tamper == "truncate":
        del blob[len(blob) - 1000 :]
    else:
        del blob[HEADER_SIZE + 39 * SEG :]
    rewrite(harness.store, "t", bytes(blob))
    before = _integrity_errors(caplog)
    with harness.book.anything(), caplog.at_level(logging.ERROR, "s3proxy"):
        refused(proxy.request("GET", "/b/t"), data)
    assert _integrity_errors(caplog) > before
