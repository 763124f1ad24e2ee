"""The exact upstream requests of each operation, with the proxy in the test process in front of
the playbook's fake upstream (tests/playbook.py, tests/inproc.py) and the session's OpenBao.

These pin today's sequences (docs/design.md, *Cost in upstream requests*): a change in what the
proxy sends fails here first, with the requests that came. Two proxies of one test are two
processes: what one learnt (a layout it wrote or read) the other has not."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client import REGISTRY

from s3proxy.core.s3xml import completion_parts
from s3proxy.core.sizes import (
    DEFAULT_SEGMENT_SIZE,
    FOOTER_SIZE,
    HEADER_SIZE,
    TRAILER_SIZE,
    ciphertext_length,
)
from tests.inproc import Harness, InProcProxy
from tests.playbook import ANY, GET, HEAD, POST, PUT, Reply, Req, Unordered

S = DEFAULT_SEGMENT_SIZE
MARKER = "x-amz-meta-s3proxy-encryption"


def marker(value: str | None) -> dict[str, Any]:
    """The proxy's metadata marker header expected with this value (``None``: absent)."""
    return {MARKER: value}


def stored(n: int) -> int:
    """The stored size of a PutObject's stream of ``n`` plaintext bytes (format v3)."""
    return ciphertext_length(n, S, 3)


def part_stored(n: int) -> int:
    """The stored size of a part's stream of ``n`` plaintext bytes (format v3)."""
    return ciphertext_length(n, S, 3)


def md5(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def multipart_etag(parts: list[bytes]) -> str:
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


FIRST = f"bytes=0-{HEADER_SIZE - 1}"  # the probe's range: the first stream header


def trailer(end: int) -> str:
    """The range of the trailer of the part stream (v2) that ends at stored offset ``end``."""
    return f"bytes={end - TRAILER_SIZE}-{end - 1}"


def footer(end: int) -> str:
    """The range of the footer of the PutObject stream (v3) that ends at stored offset ``end``."""
    return f"bytes={end - FOOTER_SIZE}-{end - 1}"


def TAIL(path: str, **headers: Any) -> Req:
    """A HEAD's request: the object's last 160 bytes (a v3 object's footer)."""
    return GET(path, Range=f"bytes=-{FOOTER_SIZE}", **headers)


def boundary(offset: int) -> str:
    """A part boundary's range: the footer (or a v2 trailer) before it and the header after it."""
    return f"bytes={offset - FOOTER_SIZE}-{offset + HEADER_SIZE - 1}"


def status(err: pytest.ExceptionInfo[ClientError]) -> int:
    return int(err.value.response["ResponseMetadata"]["HTTPStatusCode"])


def put(proxy: InProcProxy, key: str, data: bytes, **kwargs: Any) -> str:
    """Set-up: an object written through ``proxy`` (its requests not checked here)."""
    with proxy.harness.book.anything():
        etag: str = proxy.client.put_object(Bucket="b", Key=key, Body=data, **kwargs)["ETag"]
    return etag


def upload(proxy: InProcProxy, key: str, parts: list[bytes], **create: Any) -> str:
    """Set-up: a multipart upload through ``proxy``."""
    client = proxy.client
    with proxy.harness.book.anything():
        uid = client.create_multipart_upload(Bucket="b", Key=key, **create)["UploadId"]
        etags = [
            client.upload_part(Bucket="b", Key=key, UploadId=uid, PartNumber=i + 1, Body=p)["ETag"]
            for i, p in enumerate(parts)
        ]
        done = client.complete_multipart_upload(
            Bucket="b",
            Key=key,
            UploadId=uid,
            MultipartUpload={
                "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]
            },
        )
    etag: str = done["ETag"]
    return etag


def body(proxy: InProcProxy, key: str, **kwargs: Any) -> bytes:
    data: bytes = proxy.client.get_object(Bucket="b", Key=key, **kwargs)["Body"].read()
    return data


# ---- PutObject and whole reads ---------------------------------------------------------------


def test_put_object_is_one_put_and_its_writer_reads_it_back_with_one_get(harness: Harness) -> None:
    writer = harness.proxy()
    small, large = os.urandom(4000), os.urandom(300_000)
    # Up to 64 KiB: sealed whole and sent in one piece, its CRC32 as a header.
    with harness.book.expect(
        PUT(
            "/b/small",
            **marker("v=3;seg=65536"),
            Content_Encoding=None,
            x_amz_checksum_crc32=ANY,
            If_Match=None,
            If_None_Match=None,
        )
    ) as came:
        assert writer.client.put_object(Bucket="b", Key="small", Body=small)["ETag"] == md5(small)
    assert came[0].headers["Content-Length"] == str(stored(4000))
    # Larger: streamed as aws-chunked with a trailing CRC32.
    with harness.book.expect(
        PUT(
            "/b/large",
            **marker("v=3;seg=65536"),
            Content_Encoding="aws-chunked",
            x_amz_decoded_content_length=str(stored(300_000)),
            x_amz_trailer="x-amz-checksum-crc32",
        )
    ):
        assert writer.client.put_object(Bucket="b", Key="large", Body=large)["ETag"] == md5(large)
    kept = harness.store.get("b", "large")
    assert len(kept.data) == stored(300_000) and large[:1000] not in kept.data
    # The writer knows both layouts: one GET each, as the client asked.
    with harness.book.expect(GET("/b/small"), GET("/b/large")):
        assert body(writer, "small") == small
        assert body(writer, "large") == large


def test_whole_get_of_an_object_not_seen_before(harness: Harness) -> None:
    writer, reader = harness.proxy(), harness.proxy()
    small, large = os.urandom(4000), os.urandom(300_000)
    put(writer, "small", small)
    put(writer, "large", large)
    etag = harness.store.get("b", "large").etag
    # Up to 256 KiB stored: the response holds the trailer; one request.
    with harness.book.expect(GET("/b/small")):
        got = reader.client.get_object(Bucket="b", Key="small")
        assert got["Body"].read() == small and got["ETag"] == md5(small)
    # Larger: the trailer is read beside the response, If-Match its stored ETag.
    with harness.book.expect(
        GET("/b/large"), GET("/b/large", Range=footer(stored(300_000)), If_Match=etag)
    ):
        got = reader.client.get_object(Bucket="b", Key="large")
        assert got["Body"].read() == large and got["ETag"] == md5(large)
    with harness.book.expect(GET("/b/large")):  # now cached
        assert body(reader, "large") == large


# ---- ranged and conditional reads ----------------------------------------------------------


def test_ranged_get_probes_once_then_reads_only_the_span(harness: Harness) -> None:
    writer, reader = harness.proxy(), harness.proxy()
    data = os.urandom(300_000)
    etag = put(writer, "r", data)
    stored_etag = harness.store.get("b", "r").etag
    # Segment 1 (plaintext 65536..131071) holds bytes 70000..100000: stored 65808..131359.
    span = f"bytes={HEADER_SIZE + S + 16}-{HEADER_SIZE + 2 * (S + 16) - 1}"
    with harness.book.expect(
        GET("/b/r", Range=FIRST),
        GET("/b/r", Range=footer(stored(300_000)), If_Match=stored_etag),
        GET("/b/r", Range=span, If_Match=stored_etag),
    ):
        got = reader.client.get_object(Bucket="b", Key="r", Range="bytes=70000-100000")
        assert got["Body"].read() == data[70000:100001]
        assert got["ContentRange"] == f"bytes 70000-100000/{len(data)}"
        assert got["ETag"] == etag
    # Cached: the span at once, If-Match the stored ETag last seen; the client's If-Match is
    # the proxy's to evaluate (on the plaintext ETag).
    with harness.book.expect(GET("/b/r", Range=span, If_Match=stored_etag)):
        got = reader.client.get_object(
            Bucket="b", Key="r", Range="bytes=70000-100000", IfMatch=etag
        )
        assert got["Body"].read() == data[70000:100001]
    with harness.book.expect(GET("/b/r", Range=span, If_Match=stored_etag)):  # the writer too
        assert body(writer, "r", Range="bytes=70000-100000") == data[70000:100001]


def test_conditional_gets_answer_412_and_304_without_reading_segments(harness: Harness) -> None:
    writer, reader = harness.proxy(), harness.proxy()
    data = os.urandom(300_000)
    etag = put(writer, "c", data)
    stored_etag = harness.store.get("b", "c").etag
    end = stored(300_000)
    # Not cached: the probe and the trailer give the plaintext ETag; no segment is read.
    with (
        harness.book.expect(
            GET("/b/c", Range=FIRST), GET("/b/c", Range=footer(end), If_Match=stored_etag)
        ),
        pytest.raises(ClientError) as err,
    ):
        reader.client.get_object(Bucket="b", Key="c", IfMatch=md5(b"other"))
    assert status(err) == 412
    # If-None-Match takes the probe path even when cached (it mostly ends in 304).
    for kwargs in ({"IfNoneMatch": etag}, {"IfNoneMatch": etag, "Range": "bytes=0-9"}):
        with harness.book.expect(GET("/b/c", Range=FIRST)), pytest.raises(ClientError) as err:
            reader.client.get_object(Bucket="b", Key="c", **kwargs)
        assert status(err) == 304
    with harness.book.expect(GET("/b/c", Range=f"bytes=0-{end - 1}", If_Match=stored_etag)):
        assert body(reader, "c", IfMatch=etag) == data
    first_segment = f"bytes={HEADER_SIZE}-{HEADER_SIZE + S + 16 - 1}"
    with harness.book.expect(
        GET("/b/c", Range=FIRST), GET("/b/c", Range=first_segment, If_Match=stored_etag)
    ):
        assert body(reader, "c", IfNoneMatch=md5(b"other"), Range="bytes=10-19") == data[10:20]


def test_a_failed_if_match_on_a_cached_object_reads_no_span(harness: Harness) -> None:
    """With the layout cached, an ``If-Match`` the cached plaintext ETag fails is decided by
    the probe (256 bytes; the object may have changed since), not by a span of the object."""
    writer = harness.proxy()
    data = os.urandom(300_000)
    put(writer, "c", data)
    for kwargs in ({}, {"Range": "bytes=0-9"}):
        with harness.book.expect(GET("/b/c", Range=FIRST)), pytest.raises(ClientError) as err:
            writer.client.get_object(Bucket="b", Key="c", IfMatch=md5(b"other"), **kwargs)
        assert status(err) == 412
    # Changed elsewhere to what the client names: the probe finds the new object and serves it.
    other = os.urandom(1000)
    new_etag = put(harness.proxy(), "c", other)
    now = harness.store.get("b", "c").etag
    with harness.book.expect(
        GET("/b/c", Range=FIRST),
        GET("/b/c", Range=footer(stored(1000)), If_Match=now),
        GET("/b/c", Range=f"bytes=0-{stored(1000) - 1}", If_Match=now),
    ):
        assert body(writer, "c", IfMatch=new_etag) == other


# ---- HeadObject --------------------------------------------------------------------------------


def test_head_object_cold_then_cached(harness: Harness) -> None:
    writer, reader = harness.proxy(), harness.proxy()
    small, large = os.urandom(1000), os.urandom(300_000)
    put(writer, "small", small)
    etag = put(writer, "large", large)
    small_etag = harness.store.get("b", "small").etag
    large_etag = harness.store.get("b", "large").etag
    # One request: the object's end, whose footer holds what the HEAD answers (any size).
    with harness.book.expect(TAIL("/b/small")):
        assert reader.client.head_object(Bucket="b", Key="small")["ContentLength"] == 1000
    with harness.book.expect(TAIL("/b/large")):
        head = reader.client.head_object(Bucket="b", Key="large")
        assert head["ContentLength"] == 300_000 and head["ETag"] == etag
    # Conditions are the proxy's, on the plaintext ETag: the same one request.
    for kwargs, code in (({"IfMatch": md5(b"x")}, 412), ({"IfNoneMatch": etag}, 304)):
        with harness.book.expect(TAIL("/b/large")), pytest.raises(ClientError) as err:
            reader.client.head_object(Bucket="b", Key="large", **kwargs)
        assert status(err) == code
    with harness.book.expect(TAIL("/b/large")):  # the writer: the same
        assert writer.client.head_object(Bucket="b", Key="large")["ETag"] == etag
    assert small_etag and large_etag


def test_head_of_a_missing_or_foreign_object(harness: Harness) -> None:
    """No object: the end's 404 is the HEAD's answer (one request). An object not written by
    the proxy: the end shows no marker, and a HEAD asks the store as it is."""
    proxy = harness.proxy(S3PROXY_UNENCRYPTED_OBJECTS="allow")
    with harness.book.expect(TAIL("/b/nothing")), pytest.raises(ClientError) as err:
        proxy.client.head_object(Bucket="b", Key="nothing")
    assert status(err) == 404
    harness.store.put("b", "plain", b"x" * 5000)
    with harness.book.expect(TAIL("/b/plain"), HEAD("/b/plain")):
        head = proxy.client.head_object(Bucket="b", Key="plain")
    assert head["ContentLength"] == 5000 and head["ETag"] == harness.store.get("b", "plain").etag
    # An archived object refuses GETs (403 InvalidObjectState) but answers HEADs: asked again.
    data = os.urandom(1000)
    put(proxy, "cold", data)
    refused = Reply(403, (("Content-Type", "application/xml"),), b"<Error/>")
    with harness.book.expect(TAIL("/b/cold", answer=lambda _: refused), HEAD("/b/cold")):
        head = proxy.client.head_object(Bucket="b", Key="cold")
    assert head["ContentLength"] == 1000 and head["ETag"] == md5(data)


# ---- multipart ---------------------------------------------------------------------------------

PARTS = [200_000, 200_000, 1000]  # (the playbook's store has no minimum part size)


def _layout(sizes: list[int]) -> tuple[list[int], int]:
    """The stored offsets of the parts' streams and the stored total."""
    offsets, at = [], 0
    for n in sizes:
        offsets.append(at)
        at += part_stored(n)
    return offsets, at


def test_multipart_upload_and_complete(harness: Harness) -> None:
    writer = harness.proxy()
    parts = [os.urandom(n) for n in PARTS]
    client = writer.client
    with harness.book.expect(
        POST("/b/m?uploads", **marker("v=3;seg=65536;mp=1;ck=crc32;ct=COMPOSITE"))
    ):
        uid = client.create_multipart_upload(Bucket="b", Key="m", ChecksumAlgorithm="CRC32")[
            "UploadId"
        ]
    with harness.book.expect(
        *(PUT(f"/b/m?partNumber={i + 1}&uploadId={uid}", **marker(None)) for i in range(3))
    ):
        etags = [
            client.upload_part(Bucket="b", Key="m", UploadId=uid, PartNumber=i + 1, Body=p)["ETag"]
            for i, p in enumerate(parts)
        ]
    assert etags == [md5(p) for p in parts]
    kept_parts = harness.store.uploads[uid].parts
    stored_parts = [kept_parts[n][1] for n in sorted(kept_parts)]
    offsets, total = _layout(PARTS)
    # ListParts (the stored ETags), Complete with those, the first header, the part boundaries
    # (the object must be exactly the parts listed); no trailer: this process sealed them all.
    # Then the manifest: the object's tags read, and written with the manifest added.
    with harness.book.expect(
        GET(f"/b/m?uploadId={uid}&max-parts=1000"),
        POST(f"/b/m?uploadId={uid}"),
        GET("/b/m", Range=FIRST),
        Unordered(*(GET("/b/m", Range=boundary(o), If_Match=ANY) for o in offsets[1:])),
        GET("/b/m?tagging"),
        PUT("/b/m?tagging", Content_MD5=ANY),
    ) as came:
        done = client.complete_multipart_upload(
            Bucket="b",
            Key="m",
            UploadId=uid,
            MultipartUpload={
                "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]
            },
        )
    assert done["ETag"] == multipart_etag(parts)
    kept = harness.store.get("b", "m")
    assert len(kept.data) == total
    assert all(r.headers.get("If-Match") == kept.etag for r in came[3:5])
    assert completion_parts(came[1].body) == list(enumerate(stored_parts, start=1))
    assert [k for k, _ in kept.tags] == ["s3proxy-manifest"]
    # The writer reads it back with one request; a range across a part boundary with one too:
    # the last segment of part 1 (its trailer: it ends there), part 2's header and first one.
    joined = b"".join(parts)
    span = f"bytes={HEADER_SIZE + 3 * (S + 16)}-{offsets[1] + HEADER_SIZE + S + 16 - 1}"
    with harness.book.expect(GET("/b/m"), GET("/b/m", Range=span, If_Match=kept.etag)):
        assert body(writer, "m") == joined
        assert body(writer, "m", Range="bytes=199990-200009") == joined[199990:200010]


def test_reading_a_multipart_object_not_seen_before(harness: Harness) -> None:
    writer, reader, header = harness.proxy(), harness.proxy(), harness.proxy()
    parts = [os.urandom(n) for n in PARTS]
    etag = upload(writer, "m", parts)
    stored_etag = harness.store.get("b", "m").etag
    offsets, total = _layout(PARTS)
    boundaries = Unordered(
        *(GET("/b/m", Range=boundary(o), If_Match=stored_etag) for o in offsets[1:])
    )
    # A whole GET: its response is closed while the layout is discovered (parallel reads of
    # the part boundaries, the manifest tag, the last trailer), then fetched again, If-Match.
    with harness.book.expect(
        GET("/b/m"),
        boundaries,
        GET("/b/m?tagging"),
        GET("/b/m", Range=footer(total), If_Match=stored_etag),
        GET("/b/m", Range=f"bytes=0-{total - 1}", If_Match=stored_etag),
    ):
        got = reader.client.get_object(Bucket="b", Key="m")
        assert got["Body"].read() == b"".join(parts) and got["ETag"] == etag
    with harness.book.expect(GET("/b/m")):
        assert body(reader, "m") == b"".join(parts)
    # A HEAD (a v3 multipart object): its end (the last part's footer) and its manifest tag
    # (the whole object's record), nothing else.
    with harness.book.expect(TAIL("/b/m"), GET("/b/m?tagging")):
        head = header.client.head_object(Bucket="b", Key="m")
        assert head["ContentLength"] == sum(PARTS) and head["ETag"] == etag


def test_part_number_reads(harness: Harness) -> None:
    writer, reader = harness.proxy(), harness.proxy()
    parts = [os.urandom(n) for n in PARTS]
    upload(writer, "m", parts)
    single = os.urandom(300_000)
    put(writer, "single", single)
    stored_etag = harness.store.get("b", "m").etag
    offsets, _ = _layout(PARTS)
    # ?partNumber reads always probe (the layout cache saves the rest), even in the writer.
    second = f"bytes={offsets[1] + HEADER_SIZE}-{offsets[2] - 1}"
    with harness.book.expect(
        GET("/b/m", Range=FIRST), GET("/b/m", Range=second, If_Match=stored_etag)
    ):
        got = writer.client.get_object(Bucket="b", Key="m", PartNumber=2)
        assert got["Body"].read() == parts[1] and got["PartsCount"] == 3
        assert got["ContentRange"] == f"bytes {PARTS[0]}-{PARTS[0] + PARTS[1] - 1}/{sum(PARTS)}"
    # A HEAD ?partNumber is a GET of the first header upstream.
    with harness.book.expect(GET("/b/m", Range=FIRST)):
        head = writer.client.head_object(Bucket="b", Key="m", PartNumber=3)
        assert head["ContentLength"] == 1000 and head["PartsCount"] == 3
    with harness.book.expect(GET("/b/m", Range=FIRST)), pytest.raises(ClientError) as err:
        writer.client.get_object(Bucket="b", Key="m", PartNumber=4)
    assert err.value.response["Error"]["Code"] == "InvalidPartNumber"
    # Not seen before, a single stream: probe, trailer, then the part (the whole object).
    single_etag = harness.store.get("b", "single").etag
    end = stored(300_000)
    with harness.book.expect(
        GET("/b/single", Range=FIRST),
        GET("/b/single", Range=footer(end), If_Match=single_etag),
        GET("/b/single", Range=f"bytes={HEADER_SIZE}-{end - 1}", If_Match=single_etag),
    ):
        got = reader.client.get_object(Bucket="b", Key="single", PartNumber=1)
        assert got["Body"].read() == single and got["ContentRange"] == "bytes 0-299999/300000"


# ---- listings ----------------------------------------------------------------------------------


def test_list_objects_v2_looks_up_objects_not_seen_then_caches_them(harness: Harness) -> None:
    writer, lister = harness.proxy(), harness.proxy()
    small, large = os.urandom(4000), os.urandom(300_000)
    put(writer, "small", small)
    put(writer, "large", large)
    harness.store.put("b", "plain", b"x" * 5000)  # not written by the proxy
    harness.store.put("b", "tiny", b"x" * 10)  # too small to be a stream: not looked up
    etags = {k: harness.store.get("b", k).etag for k in ("small", "large", "plain")}
    listing = GET("/b?list-type=2&encoding-type=url")
    # Each object not seen before: its end, one request (in parallel across objects, so in
    # any order), whose footer holds the size and ETag; an object not the proxy's: the same.
    with harness.book.expect(
        listing,
        Unordered(*(TAIL(f"/b/{k}", If_Match=etags[k]) for k in ("small", "large", "plain"))),
    ):
        found = lister.client.list_objects_v2(Bucket="b")["Contents"]
    sizes = {o["Key"]: (o["Size"], o["ETag"]) for o in found}
    assert sizes == {
        "small": (4000, md5(small)),
        "large": (300_000, md5(large)),
        "plain": (5000, etags["plain"]),
        "tiny": (10, md5(b"x" * 10)),
    }
    with harness.book.expect(listing):  # cached by ETag
        assert lister.client.list_objects_v2(Bucket="b")["Contents"] == found
    with harness.book.expect(TAIL("/b/large")):  # a HEAD: its one request
        assert lister.client.head_object(Bucket="b", Key="large")["ContentLength"] == 300_000
    # The process that wrote the objects holds their layouts under the listed ETags and
    # sizes: only the object that is not the proxy's is looked up.
    with harness.book.expect(listing, TAIL("/b/plain", If_Match=etags["plain"])):
        assert writer.client.list_objects_v2(Bucket="b")["Contents"] == found


# ---- copies ------------------------------------------------------------------------------------


def test_copy_object(harness: Harness) -> None:
    writer, copier = harness.proxy(), harness.proxy()
    data = os.urandom(300_000)
    etag = put(writer, "src", data, Metadata={"old": "1"})
    src_etag = harness.store.get("b", "src").etag
    # The source not seen before: its header and trailer (the plaintext ETag, the client's
    # conditions), then the upstream's copy, If-Match the stored ETag that was checked.
    with harness.book.expect(
        GET("/b/src", Range=FIRST),
        GET("/b/src", Range=footer(stored(300_000)), If_Match=src_etag),
        PUT("/b/dst", x_amz_copy_source="b/src", x_amz_copy_source_if_match=src_etag),
    ):
        done = copier.client.copy_object(
            Bucket="b", Key="dst", CopySource={"Bucket": "b", "Key": "src"}, CopySourceIfMatch=etag
        )
        assert done["CopyObjectResult"]["ETag"] == etag
    # Cached: the probe still (the current stored ETag), then the copy; REPLACE carries the
    # proxy's marker over.
    with harness.book.expect(
        GET("/b/src", Range=FIRST),
        PUT(
            "/b/dst2",
            x_amz_copy_source="b/src",
            x_amz_copy_source_if_match=src_etag,
            x_amz_metadata_directive="REPLACE",
            **marker("v=3;seg=65536"),
            x_amz_meta_new="2",
        ),
    ):
        copier.client.copy_object(
            Bucket="b",
            Key="dst2",
            CopySource={"Bucket": "b", "Key": "src"},
            MetadataDirective="REPLACE",
            Metadata={"new": "2"},
        )
    # A failed source condition: nothing is copied.
    with harness.book.expect(GET("/b/src", Range=FIRST)), pytest.raises(ClientError) as err:
        copier.client.copy_object(
            Bucket="b",
            Key="dst3",
            CopySource={"Bucket": "b", "Key": "src"},
            CopySourceIfNoneMatch=etag,
        )
    assert status(err) == 412
    with harness.book.anything():
        got = writer.client.get_object(Bucket="b", Key="dst2")
        assert got["Body"].read() == data and got["Metadata"] == {"new": "2"}
        assert body(writer, "dst") == data


def test_upload_part_copy(harness: Harness) -> None:
    writer, copier = harness.proxy(), harness.proxy()
    parts = [os.urandom(n) for n in PARTS]
    upload(writer, "m", parts)
    single = os.urandom(300_000)
    put(writer, "single", single)
    m_etag = harness.store.get("b", "m").etag
    single_etag = harness.store.get("b", "single").etag
    offsets, total = _layout(PARTS)
    with harness.book.anything():
        uid = copier.client.create_multipart_upload(Bucket="b", Key="dst")["UploadId"]
    # A range that is exactly one stream of the source: the upstream copies its stored bytes.
    with harness.book.expect(
        GET("/b/m", Range=FIRST),
        Unordered(*(GET("/b/m", Range=boundary(o), If_Match=m_etag) for o in offsets[1:])),
        GET("/b/m?tagging"),
        GET("/b/m", Range=footer(total), If_Match=m_etag),
        PUT(
            f"/b/dst?partNumber=1&uploadId={uid}",
            x_amz_copy_source="b/m",
            x_amz_copy_source_if_match=m_etag,
            x_amz_copy_source_range=f"bytes={offsets[1]}-{offsets[2] - 1}",
        ),
    ):
        first_part = copier.client.upload_part_copy(
            Bucket="b",
            Key="dst",
            UploadId=uid,
            PartNumber=1,
            CopySource={"Bucket": "b", "Key": "m"},
            CopySourceRange=f"bytes={PARTS[0]}-{PARTS[0] + PARTS[1] - 1}",
        )["CopyPartResult"]["ETag"]
    assert first_part == md5(parts[1])
    # Any other range: read (exactly the covering segments), decrypted, encrypted as the part.
    end = stored(300_000)
    with harness.book.expect(
        GET("/b/single", Range=FIRST),
        GET("/b/single", Range=footer(end), If_Match=single_etag),
        GET(
            "/b/single",
            Range=f"bytes={HEADER_SIZE}-{HEADER_SIZE + 2 * (S + 16) - 1}",
            If_Match=single_etag,
        ),
        PUT(f"/b/dst?partNumber=2&uploadId={uid}", **marker(None)),
    ):
        second_part = copier.client.upload_part_copy(
            Bucket="b",
            Key="dst",
            UploadId=uid,
            PartNumber=2,
            CopySource={"Bucket": "b", "Key": "single"},
            CopySourceRange="bytes=5-100004",
        )["CopyPartResult"]["ETag"]
    assert second_part == md5(single[5:100005])
    with harness.book.anything():
        copier.client.complete_multipart_upload(
            Bucket="b",
            Key="dst",
            UploadId=uid,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": 1, "ETag": first_part},
                    {"PartNumber": 2, "ETag": second_part},
                ]
            },
        )
        assert body(writer, "dst") == parts[1] + single[5:100005]


# ---- what one process learnt, and what the other has not (from tests/test_upstream_requests.py)


def test_small_objects_read_back_with_one_upstream_request_each(harness: Harness) -> None:
    writer, other = harness.proxy(), harness.proxy()
    data = os.urandom(4096)
    put(writer, "k", data)
    with harness.book.expect(TAIL("/b/k"), TAIL("/b/k")):
        head = writer.client.head_object(Bucket="b", Key="k")
        assert writer.client.head_object(Bucket="b", Key="k")["ETag"] == head["ETag"]
    # Same ETag and checksum from either process, and from the response that read it whole.
    with harness.book.expect(GET("/b/k"), TAIL("/b/k")):
        got = other.client.get_object(Bucket="b", Key="k", ChecksumMode="ENABLED")
        assert got["ETag"] == head["ETag"] and got["Body"].read() == data
        assert "ChecksumCRC32" in got
        assert other.client.head_object(Bucket="b", Key="k")["ETag"] == head["ETag"]
    # HEAD first in the other process: its footer alone; then a GET is one request.
    put(writer, "k2", data[:1000])
    with harness.book.expect(TAIL("/b/k2"), GET("/b/k2")):
        assert other.client.head_object(Bucket="b", Key="k2")["ContentLength"] == 1000
        assert body(other, "k2") == data[:1000]


def test_multipart_downloads_as_s3transfer_makes_them(harness: Harness) -> None:
    """HeadObject, then ranged GETs ``If-Match`` the ETag: one request each where the layout
    is known, in the process that completed the upload and in another once it has read it."""
    writer, other = harness.proxy(), harness.proxy()
    parts = [os.urandom(n) for n in PARTS]
    joined = b"".join(parts)
    etag = upload(writer, "m", parts, ChecksumAlgorithm="CRC32")
    stored_etag = harness.store.get("b", "m").etag
    offsets, total = _layout(PARTS)
    chunk = 150_000
    spans = range(0, len(joined), chunk)

    def download(client: Any) -> None:
        assert client.head_object(Bucket="b", Key="m")["ETag"] == etag
        for start in spans:
            end = min(start + chunk, len(joined)) - 1
            got = client.get_object(Bucket="b", Key="m", Range=f"bytes={start}-{end}", IfMatch=etag)
            assert got["Body"].read() == joined[start : end + 1]

    ranged = [GET("/b/m", Range=ANY, If_Match=stored_etag) for _ in spans]
    with harness.book.expect(TAIL("/b/m"), *ranged):
        download(writer.client)
    # Another process: the HEAD from the last part's footer and the manifest's record; the
    # layout is then found by the first ranged GET (its probe, the part boundaries, the tag).
    with harness.book.expect(TAIL("/b/m"), GET("/b/m?tagging")):
        seen = other.client.head_object(Bucket="b", Key="m", ChecksumMode="ENABLED")
    with harness.book.expect(TAIL("/b/m")):
        mine = writer.client.head_object(Bucket="b", Key="m", ChecksumMode="ENABLED")
    for field in ("ETag", "ContentLength", "ChecksumCRC32", "ChecksumType"):
        assert seen.get(field) == mine.get(field), field
    with harness.book.expect(
        TAIL("/b/m"),
        GET("/b/m?tagging"),
        GET("/b/m", Range=FIRST),
        Unordered(*(GET("/b/m", Range=boundary(o), If_Match=stored_etag) for o in offsets[1:])),
        GET("/b/m?tagging"),
        GET("/b/m", Range=footer(total), If_Match=stored_etag),
        *ranged,
    ):
        download(other.client)
    with harness.book.expect(TAIL("/b/m"), *ranged):
        download(other.client)


def test_parts_uploaded_through_one_process_and_completed_through_another(
    harness: Harness,
) -> None:
    """The completing process sealed none of the parts: each part's trailer comes with the
    boundary reads, the last one with one more read."""
    uploader, completer = harness.proxy(), harness.proxy()
    parts = [os.urandom(n) for n in PARTS]
    with harness.book.anything():
        uid = completer.client.create_multipart_upload(Bucket="b", Key="m")["UploadId"]
        etags = [
            uploader.client.upload_part(
                Bucket="b", Key="m", UploadId=uid, PartNumber=i + 1, Body=p
            )["ETag"]
            for i, p in enumerate(parts)
        ]
    offsets, total = _layout(PARTS)
    with harness.book.expect(
        GET(f"/b/m?uploadId={uid}&max-parts=1000"),
        POST(f"/b/m?uploadId={uid}"),
        GET("/b/m", Range=FIRST),
        Unordered(*(GET("/b/m", Range=boundary(o), If_Match=ANY) for o in offsets[1:])),
        GET("/b/m", Range=footer(total), If_Match=ANY),
        GET("/b/m?tagging"),
        PUT("/b/m?tagging", Content_MD5=ANY),
    ):
        done = completer.client.complete_multipart_upload(
            Bucket="b",
            Key="m",
            UploadId=uid,
            MultipartUpload={
                "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]
            },
        )
    assert done["ETag"] == multipart_etag(parts)
    with harness.book.anything():
        assert body(uploader, "m") == b"".join(parts)


def test_a_part_uploaded_again_through_another_process_is_read_back_at_completion(
    harness: Harness,
) -> None:
    """The parts a process remembers count only where ListParts shows the stored ETag its own
    UploadPart was answered: a part replaced through another process is read back."""
    a, b = harness.proxy(), harness.proxy()
    parts = [os.urandom(n) for n in PARTS]
    with harness.book.anything():
        uid = a.client.create_multipart_upload(Bucket="b", Key="again")["UploadId"]
        etags = [
            a.client.upload_part(Bucket="b", Key="again", UploadId=uid, PartNumber=i + 1, Body=p)[
                "ETag"
            ]
            for i, p in enumerate(parts)
        ]
        parts[1] = os.urandom(PARTS[1])
        etags[1] = b.client.upload_part(
            Bucket="b", Key="again", UploadId=uid, PartNumber=2, Body=parts[1]
        )["ETag"]
    offsets, _ = _layout(PARTS)
    # ListParts, Complete, the first 256 bytes, 2 part boundaries (with the replaced part's
    # trailer before the second), the manifest tag; the last part's trailer is the one this
    # process sealed.
    with harness.book.expect(
        GET(f"/b/again?uploadId={uid}&max-parts=1000"),
        POST(f"/b/again?uploadId={uid}"),
        GET("/b/again", Range=FIRST),
        Unordered(*(GET("/b/again", Range=boundary(o), If_Match=ANY) for o in offsets[1:])),
        GET("/b/again?tagging"),
        PUT("/b/again?tagging", Content_MD5=ANY),
    ):
        done = a.client.complete_multipart_upload(
            Bucket="b",
            Key="again",
            UploadId=uid,
            MultipartUpload={
                "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]
            },
        )
    joined = b"".join(parts)
    with harness.book.anything():
        assert body(b, "again") == joined
        assert b.client.head_object(Bucket="b", Key="again")["ETag"] == done["ETag"]
        assert body(a, "again", Range="bytes=0-99") == joined[:100]


# ---- Vault calls -------------------------------------------------------------------------------


def _vault_calls(kind: str) -> float:
    """Vault calls of ``kind`` made so far by every proxy of this test process."""
    found = REGISTRY.get_sample_value(
        "s3proxy_vault_request_duration_seconds_count", {"kind": kind, "outcome": "ok"}
    )
    return found or 0.0


def test_a_cold_listing_costs_one_vault_call_per_key_version_not_per_data_key(
    harness: Harness,
) -> None:
    """Objects written under 40 data keys (a data key per object): a fresh process lists them
    exactly with no data key unwrapped, and one HMAC for the one transit key version whose
    metadata key sealed their footers (docs/format.md, Metadata keys)."""
    writer = harness.proxy(S3PROXY_DATAKEY_REUSE_SECONDS="0", S3PROXY_KEY_CACHE_SECONDS="0")
    bodies = {f"k{i:02d}": os.urandom(70_000 + i) for i in range(40)}
    for key, data in bodies.items():
        put(writer, key, data)
    lister = harness.proxy()
    decrypts, hmacs = _vault_calls("decrypt"), _vault_calls("hmac")
    with harness.book.expect(
        GET("/b?list-type=2&encoding-type=url"),
        Unordered(*(TAIL(f"/b/{k}", If_Match=ANY) for k in bodies)),
    ):
        listed = lister.client.list_objects_v2(Bucket="b")["Contents"]
    assert {o["Key"]: (o["Size"], o["ETag"]) for o in listed} == {
        k: (len(d), md5(d)) for k, d in bodies.items()
    }
    assert _vault_calls("decrypt") == decrypts  # no data key unwrapped
    assert _vault_calls("hmac") == hmacs + 1  # one metadata key, for the one key version
