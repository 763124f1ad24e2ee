"""What ``s3proxy rewrap`` asks of the store per object (s3proxy.ops.rewrap.Rewrapper), in
process against the playbook's fake upstream: one ranged GET decides a single-stream object
(its answer carries what a HEAD's would, and the stream header holds the key version), and only
an object that is rewritten is read further."""

from __future__ import annotations

import os
from typing import Any

from s3proxy.core.manifest import MANIFEST_TAG
from s3proxy.core.sizes import FOOTER_SIZE
from s3proxy.core.wholeobject import is_whole_record
from s3proxy.ops.rewrap import Rewrapper
from tests.inproc import Harness, InProcProxy, Target
from tests.playbook import GET, PUT, Unordered
from tests.test_inproc_requests import TAIL, upload

FIRST = "bytes=0-255"


def _rewrapper(proxy: InProcProxy) -> Rewrapper:
    assert proxy.proxy is not None
    return Rewrapper(proxy._vault, proxy.upstream, "crc32")  # type: ignore[arg-type]


def _put(proxy: InProcProxy, key: str, data: bytes, **extra: Any) -> None:
    with proxy.harness.book.anything():
        proxy.client.put_object(Bucket="b", Key=key, Body=data, **extra)


def test_a_current_object_costs_one_ranged_get(harness: Harness) -> None:
    proxy = harness.proxy()
    _put(proxy, "k", os.urandom(100_000))
    rewrapper = _rewrapper(proxy)
    with harness.book.expect(GET("/b/k", Range=FIRST, If_Match=None)):
        assert harness.run(rewrapper.one(Target("b", "k", ()), latest=1)) == "current"


def test_a_dry_run_of_a_stale_object_costs_one_ranged_get(harness: Harness) -> None:
    proxy = harness.proxy()
    _put(proxy, "k", os.urandom(100_000))
    rewrapper = _rewrapper(proxy)
    with harness.book.expect(GET("/b/k", Range=FIRST)):
        found = harness.run(rewrapper.one(Target("b", "k", ()), latest=2, dry_run=True))
    assert found == "to rewrap"


def test_an_object_the_proxy_did_not_write_is_skipped_after_one_get(harness: Harness) -> None:
    proxy = harness.proxy()
    harness.store.put("b", "plain", b"written around the proxy")
    with harness.book.expect(GET("/b/plain", Range=FIRST)):
        assert harness.run(_rewrapper(proxy).one(Target("b", "plain", ()), 1)) == "skipped"


def test_a_rewrite_reads_the_footer_and_the_segments_then_puts_with_the_metadata(
    harness: Harness,
) -> None:
    """The rewritten object keeps its metadata (taken from the GET's answer, no HEAD), gets a
    footer sealed anew, and reads back as the plaintext written (through a proxy that has not
    seen it)."""
    proxy = harness.proxy()
    data = os.urandom(100_000)
    _put(proxy, "k", data, ContentType="text/x-kept", Metadata={"who": "me"})
    etag = harness.store.get("b", "k").etag
    end = len(harness.store.get("b", "k").data)
    footer_before = harness.store.get("b", "k").data[-FOOTER_SIZE:]
    rewrapper = _rewrapper(proxy)
    with harness.book.expect(
        GET("/b/k", Range=FIRST),
        GET("/b/k", Range=f"bytes={end - FOOTER_SIZE}-{end - 1}", If_Match=etag),  # the footer
        Unordered(  # the stream read is the upload's body: both at once
            PUT("/b/k", Content_Type="text/x-kept", x_amz_meta_who="me"),
            GET("/b/k", Range=f"bytes=256-{end - FOOTER_SIZE - 1}", If_Match=etag),  # its segments
        ),
    ) as came:
        # latest=2 while the object's key is v1: rewritten (Vault rewraps it to its latest)
        assert harness.run(rewrapper.one(Target("b", "k", ()), latest=2)) == "rewritten"
    assert len(came) == 4
    assert harness.store.get("b", "k").data[-FOOTER_SIZE:] != footer_before
    with harness.book.anything():
        got = harness.proxy().client.get_object(Bucket="b", Key="k")
    assert got["Body"].read() == data
    assert got["ContentType"] == "text/x-kept" and got["Metadata"] == {"who": "me"}


def test_a_multipart_object_keeps_a_v3_manifest_sealed_again(harness: Harness) -> None:
    """The rewritten parts keep their salts and sizes, so the record's facts stay true; it is
    sealed again (a fresh salt, the latest metadata key) and a fresh proxy's HEAD answers from
    it and the new last footer."""
    proxy = harness.proxy()
    parts = [os.urandom(n) for n in (200_000, 200_000, 1000)]
    etag = upload(proxy, "m", parts)
    before = dict(harness.store.get("b", "m").tags)[MANIFEST_TAG]
    with harness.book.anything():
        assert harness.run(_rewrapper(proxy).one(Target("b", "m", ()), latest=2)) == "rewritten"
    after = dict(harness.store.get("b", "m").tags)[MANIFEST_TAG]
    assert is_whole_record(after) and after != before
    fresh = harness.proxy()
    with harness.book.expect(TAIL("/b/m"), GET("/b/m?tagging")):
        head = fresh.client.head_object(Bucket="b", Key="m")
    assert head["ETag"] == etag and head["ContentLength"] == sum(map(len, parts))
    with harness.book.anything():
        assert fresh.client.get_object(Bucket="b", Key="m")["Body"].read() == b"".join(parts)
