"""Writes through the proxy (conditional and checked uploads, multipart uploads and their
completion, copies), in process against the playbook's fake upstream (tests/inproc.py): the
proxy's own logic, with real boto3 as the client and, where the upstream requests are the point,
those requests exactly. What only real peers show stays in the end-to-end tests (moto, Ceph RGW:
tests/test_conditional_writes.py, tests/test_multipart.py, tests/test_copies.py,
tests/test_rgw.py)."""

from __future__ import annotations

import base64
import hashlib
import os
import random
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3proxy.core.checksums import new_hasher
from s3proxy.core.format import parse_header
from s3proxy.core.sizes import DEFAULT_SEGMENT_SIZE, HEADER_SIZE, ciphertext_length
from tests.inproc import Harness, InProcProxy
from tests.playbook import GET, PUT

S = DEFAULT_SEGMENT_SIZE
FIRST = f"bytes=0-{HEADER_SIZE - 1}"


def md5(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def multipart_etag(parts: list[bytes]) -> str:
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


def error(call: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as err:
        call()
    response = err.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def upload(client: Any, key: str, parts: list[bytes], **create: Any) -> str:
    uid = client.create_multipart_upload(Bucket="b", Key=key, **create)["UploadId"]
    etags = [
        client.upload_part(Bucket="b", Key=key, UploadId=uid, PartNumber=i + 1, Body=p)["ETag"]
        for i, p in enumerate(parts)
    ]
    done = client.complete_multipart_upload(
        Bucket="b",
        Key=key,
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]},
    )
    etag: str = done["ETag"]
    return etag


@pytest.fixture
def proxy(harness: Harness) -> InProcProxy:
    return harness.proxy()


# ---- conditional and checked uploads ----------------------------------------------------------


def _put_with(client: Any, key: str, body: bytes, **headers: str) -> Any:
    def add(params: dict[str, Any], **_: Any) -> None:
        params["headers"].update(headers)

    client.meta.events.register_first("before-call.s3.PutObject", add)
    try:
        return client.put_object(Bucket="b", Key=key, Body=body)
    finally:
        client.meta.events.unregister("before-call.s3.PutObject", add)


@pytest.mark.parametrize("size", [3, 300_000])
def test_conditional_puts(harness: Harness, proxy: InProcProxy, size: int) -> None:
    """``If-Match`` / ``If-None-Match`` name the plaintext ETag, quoted or bare (as ceph's
    s3-tests sends them), or ``*``; the upstream write is made conditional on the stored ETag,
    quoted as the client quoted it (``*`` bare: moto compares it as an ETag). (From
    tests/test_conditional_writes.py, which keeps the round against moto.)"""
    client, book = proxy.client, harness.book
    data = bytes([size % 251]) * size
    with book.anything():
        etag = client.put_object(Bucket="b", Key="c", Body=data)["ETag"]
    stored = harness.store.get("b", "c").etag
    # Compared with the current plaintext ETag (read by the probe): refused, nothing written.
    for header, value in (
        ("If-None-Match", etag),
        ("If-None-Match", etag.strip('"')),
        ("If-None-Match", f"W/{etag}"),
        ("If-Match", '"0123456789abcdef0123456789abcdef"'),
        ("If-Match", "ABCORZ"),
    ):
        with book.expect(GET("/b/c", Range=FIRST)):
            assert error(lambda h=header, v=value: _put_with(client, "c", b"no", **{h: v})) == (
                412,
                "PreconditionFailed",
            ), (header, value)
    # If-None-Match: * goes upstream as it is (the store refuses it).
    with book.expect(PUT("/b/c", If_None_Match="*")):
        assert error(lambda: _put_with(client, "c", b"no", **{"If-None-Match": "*"}))[0] == 412
    assert harness.store.get("b", "c").data and harness.store.get("b", "c").etag == stored
    for n, quoting in enumerate(("quoted", "bare", "*")):
        value = {"quoted": etag, "bare": etag.strip('"'), "*": "*"}[quoting]
        sent = stored if quoting == "quoted" else stored.strip('"')
        new = data + bytes([n])
        with book.expect(GET("/b/c", Range=FIRST), PUT("/b/c", If_Match=sent)):
            etag = _put_with(client, "c", new, **{"If-Match": value})["ETag"]
        assert etag == md5(new)
        stored = harness.store.get("b", "c").etag
    with book.expect(GET("/b/c", Range=FIRST), PUT("/b/c", If_None_Match="ABCORZ")):
        _put_with(client, "c", b"other", **{"If-None-Match": "ABCORZ"})
    with book.anything():
        assert client.get_object(Bucket="b", Key="c")["Body"].read() == b"other"
    # No object: the upstream answers the condition.
    with book.expect(GET("/b/absent", Range=FIRST), PUT("/b/absent", If_Match="*")):
        assert error(lambda: _put_with(client, "absent", b"x", **{"If-Match": "*"}))[0] == 404
    with book.expect(PUT("/b/absent", If_None_Match="*")):
        _put_with(client, "absent", b"new", **{"If-None-Match": "*"})


def test_wrong_checksums_are_refused_and_nothing_is_stored(
    harness: Harness, proxy: InProcProxy
) -> None:
    client = proxy.client
    data = b"checksummed body"
    with harness.book.expect(PUT("/b/ok")):
        assert "ChecksumCRC32" in client.put_object(Bucket="b", Key="ok", Body=data)
    # A small body is held whole: a wrong digest is refused before anything goes upstream.
    with harness.book.expect():
        code = error(
            lambda: client.put_object(Bucket="b", Key="x", Body=data, ChecksumCRC32="AAAAAA==")
        )
        assert code == (400, "BadDigest")
        wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
        code = error(lambda: client.put_object(Bucket="b", Key="x", Body=data, ContentMD5=wrong))
        assert code == (400, "BadDigest")
    # A streamed body: its upload is cut short of its length, so the store keeps nothing.
    large = os.urandom(300_000)
    with harness.book.expect(PUT("/b/x", complete=False)):
        code = error(
            lambda: client.put_object(Bucket="b", Key="x", Body=large, ChecksumCRC32="AAAAAA==")
        )
        assert code == (400, "BadDigest")
    assert sorted(harness.store.buckets["b"]) == ["ok"]


def test_conditional_writes_and_copies_take_the_clients_etag(
    harness: Harness, proxy: InProcProxy
) -> None:
    """(From tests/test_etags.py.)"""
    client = proxy.client
    with harness.book.anything():
        etag = client.put_object(Bucket="b", Key="w", Body=b"version one")["ETag"]
        code = error(lambda: client.put_object(Bucket="b", Key="w", Body=b"x", IfMatch=md5(b"n")))
        assert code[0] == 412
        put = client.put_object(Bucket="b", Key="w", Body=b"version two", IfMatch=etag)
        assert put["ETag"] == md5(b"version two")
        assert (
            error(lambda: client.put_object(Bucket="b", Key="w", Body=b"x", IfNoneMatch="*"))[0]
            == 412
        )
        source = {"Bucket": "b", "Key": "w"}
        copied = client.copy_object(
            Bucket="b", Key="w2", CopySource=source, CopySourceIfMatch=put["ETag"]
        )
        assert copied["CopyObjectResult"]["ETag"] == put["ETag"]
        assert client.head_object(Bucket="b", Key="w2")["ETag"] == put["ETag"]
        code = error(
            lambda: client.copy_object(
                Bucket="b", Key="w3", CopySource=source, CopySourceIfMatch=etag
            )
        )
        assert code[0] == 412
        code = error(
            lambda: client.copy_object(
                Bucket="b", Key="w3", CopySource=source, CopySourceIfNoneMatch=put["ETag"]
            )
        )
        assert code[0] == 412
        replaced = client.copy_object(
            Bucket="b",
            Key="w4",
            CopySource=source,
            Metadata={"a": "b"},
            MetadataDirective="REPLACE",
        )
        assert replaced["CopyObjectResult"]["ETag"] == put["ETag"]
        assert client.get_object(Bucket="b", Key="w4")["Body"].read() == b"version two"
    assert "w3" not in harness.store.buckets["b"]


# ---- multipart ---------------------------------------------------------------------------------


def test_parts_out_of_order_retried_and_through_another_process(
    harness: Harness, proxy: InProcProxy
) -> None:
    """(From tests/test_multipart.py; the store has no minimum part size, so parts are small.)"""
    client = proxy.client
    other = harness.proxy()
    parts = [os.urandom(200_000 + i * 1000) for i in range(3)] + [os.urandom(123)]
    with harness.book.anything():
        uid = client.create_multipart_upload(Bucket="b", Key="mp", Metadata={"a": "b"})["UploadId"]
        etags: dict[int, str] = {}
        for number in (4, 2):
            etags[number] = client.upload_part(
                Bucket="b", Key="mp", UploadId=uid, PartNumber=number, Body=parts[number - 1]
            )["ETag"]
        # Part 3 first with wrong bytes, then retried with the right ones.
        client.upload_part(
            Bucket="b", Key="mp", UploadId=uid, PartNumber=3, Body=os.urandom(240_000)
        )
        etags[3] = client.upload_part(
            Bucket="b", Key="mp", UploadId=uid, PartNumber=3, Body=parts[2]
        )["ETag"]
        # Part 1 through a second proxy, which shares nothing with the first.
        etags[1] = other.client.upload_part(
            Bucket="b", Key="mp", UploadId=uid, PartNumber=1, Body=parts[0]
        )["ETag"]
        listed = client.list_parts(Bucket="b", Key="mp", UploadId=uid)
        assert [p["Size"] for p in listed["Parts"]] == [len(p) for p in parts]
        client.complete_multipart_upload(
            Bucket="b",
            Key="mp",
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2, 3, 4)]},
        )
        plaintext = b"".join(parts)
        got = client.get_object(Bucket="b", Key="mp")
        assert got["ContentLength"] == len(plaintext)
        assert got["Metadata"] == {"a": "b"}
        assert got["Body"].read() == plaintext
        blob = harness.store.get("b", "mp").data
        assert len(blob) == sum(ciphertext_length(len(p), S, 3) for p in parts)
        assert parse_header(blob).plaintext_length == len(parts[0])
        # A fresh proxy with no cached layout reads it too.
        fresh = harness.proxy().client
        assert fresh.head_object(Bucket="b", Key="mp")["ContentLength"] == len(plaintext)
        ranged = fresh.get_object(Bucket="b", Key="mp", Range="bytes=199990-400200")
        assert ranged["Body"].read() == plaintext[199990:400201]


def test_a_part_resent_with_the_same_bytes_completes_with_the_first_etag(
    harness: Harness, proxy: InProcProxy
) -> None:
    """(From tests/test_etags.py.)"""
    client = proxy.client
    part, last = os.urandom(200_000), os.urandom(100)
    with harness.book.anything():
        uid = client.create_multipart_upload(Bucket="b", Key="again")["UploadId"]
        one = client.upload_part(Bucket="b", Key="again", UploadId=uid, PartNumber=1, Body=part)
        two = client.upload_part(Bucket="b", Key="again", UploadId=uid, PartNumber=1, Body=part)
        assert one["ETag"] == two["ETag"] == md5(part)  # equal bytes, equal ETags, as on S3
        tail = client.upload_part(Bucket="b", Key="again", UploadId=uid, PartNumber=2, Body=last)
        done = client.complete_multipart_upload(
            Bucket="b",
            Key="again",
            UploadId=uid,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": 1, "ETag": one["ETag"]},
                    {"PartNumber": 2, "ETag": tail["ETag"]},
                ]
            },
        )
        assert done["ETag"] == multipart_etag([part, last])
        assert client.get_object(Bucket="b", Key="again")["Body"].read() == part + last


def test_list_parts_reports_plaintext_sizes_and_complete_takes_its_etags(
    harness: Harness, proxy: InProcProxy
) -> None:
    """(From tests/test_etags.py.)"""
    client = proxy.client
    parts = [os.urandom(200_000), os.urandom(77)]
    with harness.book.anything():
        uid = client.create_multipart_upload(Bucket="b", Key="lp")["UploadId"]
        for number, part in enumerate(parts, start=1):
            client.upload_part(Bucket="b", Key="lp", UploadId=uid, PartNumber=number, Body=part)
        listed = client.list_parts(Bucket="b", Key="lp", UploadId=uid)["Parts"]
        assert [p["Size"] for p in listed] == [len(p) for p in parts]
        # A client that completes with the ETags ListParts gave it (the stored parts') too.
        done = client.complete_multipart_upload(
            Bucket="b",
            Key="lp",
            UploadId=uid,
            MultipartUpload={
                "Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in listed]
            },
        )
        assert done["ETag"] == multipart_etag(parts)


def test_complete_refuses_part_lists_as_s3_does_and_repeats_as_s3_does(harness: Harness) -> None:
    """A part ETag that is not the part's is ``InvalidPart``, found before completing where
    this process sealed the part, after it where another did (the upload is then gone and
    nothing reads); parts out of order are ``InvalidPartOrder``; a part listed twice in a row
    counts once; a Complete repeated after it succeeded is answered again. (From
    tests/test_multipart.py.)"""
    client, elsewhere = harness.proxy().client, harness.proxy().client
    parts = [os.urandom(200_000), os.urandom(1000)]
    wrong = '"ffffffffffffffffffffffffffffffff"'
    key = "wrong-etag"

    def complete(via: Any, uid: str, listed: list[tuple[int, str]]) -> Any:
        return via.complete_multipart_upload(
            Bucket="b",
            Key=key,
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in listed]},
        )

    with harness.book.anything():
        uid = client.create_multipart_upload(Bucket="b", Key=key)["UploadId"]
        etags = [
            client.upload_part(Bucket="b", Key=key, UploadId=uid, PartNumber=i + 1, Body=p)["ETag"]
            for i, p in enumerate(parts)
        ]
    # Parts this process sealed: refused before the upstream is asked to complete.
    for listed, code in (
        ([(1, etags[0]), (2, wrong)], "InvalidPart"),
        ([(1, etags[0]), (3, etags[1])], "InvalidPart"),
        ([(2, etags[1]), (1, etags[0])], "InvalidPartOrder"),
    ):
        with harness.book.expect(GET(f"/b/{key}?uploadId={uid}&max-parts=1000")):
            assert error(lambda li=listed: complete(client, uid, li)) == (400, code)
    assert uid in harness.store.uploads  # still there
    with harness.book.anything():
        # A part named twice in a row (a retried UploadPart's two answers): the last counts.
        listed = [(1, wrong), (1, etags[0]), (2, etags[1])]
        done = complete(client, uid, listed)
        assert client.get_object(Bucket="b", Key=key)["Body"].read() == b"".join(parts)
        # Repeated, by the same process or another: the same answer.
        assert complete(client, uid, listed)["ETag"] == done["ETag"]
        assert complete(elsewhere, uid, listed)["ETag"] == done["ETag"]
        assert error(lambda: complete(client, uid, [(1, etags[0]), (2, wrong)]))[0] == 404
        # Parts sealed by another process: the wrong ETag shows only once the upstream has
        # completed; the answer is still InvalidPart, and the object is never readable.
        key = "wrong-etag-elsewhere"
        uid = client.create_multipart_upload(Bucket="b", Key=key)["UploadId"]
        etags = [
            client.upload_part(Bucket="b", Key=key, UploadId=uid, PartNumber=i + 1, Body=p)["ETag"]
            for i, p in enumerate(parts)
        ]
        assert error(lambda: complete(elsewhere, uid, [(1, etags[0]), (2, wrong)])) == (
            400,
            "InvalidPart",
        )
        assert harness.store.get("b", key).tags == []  # no manifest
        assert error(lambda: client.get_object(Bucket="b", Key=key))[0] == 500


def test_multipart_checksums_are_s3s_for_the_plaintext(
    harness: Harness, proxy: InProcProxy
) -> None:
    """(From tests/test_etags.py.)"""
    client = proxy.client
    parts = [os.urandom(200_000), os.urandom(200_000), os.urandom(4321)]
    data = b"".join(parts)

    def crc(algorithm: str, body: bytes) -> bytes:
        hasher = new_hasher(algorithm)
        hasher.update(body)
        return hasher.digest()

    with harness.book.anything():
        # COMPOSITE (what s3transfer asks for with CRC32): the CRC32 of the parts' CRC32s, -N.
        uid = client.create_multipart_upload(Bucket="b", Key="comp", ChecksumAlgorithm="CRC32")
        assert (uid["ChecksumAlgorithm"], uid["ChecksumType"]) == ("CRC32", "COMPOSITE")
        done_parts = []
        for number, part in enumerate(parts, start=1):
            resp = client.upload_part(
                Bucket="b", Key="comp", UploadId=uid["UploadId"], PartNumber=number,
                Body=part, ChecksumAlgorithm="CRC32",
            )  # fmt: skip
            assert resp["ChecksumCRC32"] == base64.b64encode(crc("crc32", part)).decode()
            done_parts.append(
                {"PartNumber": number, "ETag": resp["ETag"], "ChecksumCRC32": resp["ChecksumCRC32"]}
            )
        done = client.complete_multipart_upload(
            Bucket="b", Key="comp", UploadId=uid["UploadId"],
            MultipartUpload={"Parts": done_parts},
        )  # fmt: skip
        composite = crc("crc32", b"".join(crc("crc32", p) for p in parts))
        expected = f"{base64.b64encode(composite).decode()}-3"
        assert (done["ChecksumCRC32"], done["ChecksumType"]) == (expected, "COMPOSITE")
        head = client.head_object(Bucket="b", Key="comp", ChecksumMode="ENABLED")
        assert (head["ChecksumCRC32"], head["ChecksumType"]) == (expected, "COMPOSITE")
        part = client.get_object(Bucket="b", Key="comp", PartNumber=2, ChecksumMode="ENABLED")
        assert part["ChecksumCRC32"] == base64.b64encode(crc("crc32", parts[1])).decode()
        assert part["Body"].read() == parts[1]  # botocore validated the part's CRC32
        # FULL_OBJECT (CRC64NVME): the CRC of the whole plaintext, which botocore validates.
        uid = client.create_multipart_upload(
            Bucket="b", Key="full", ChecksumAlgorithm="CRC64NVME", ChecksumType="FULL_OBJECT"
        )
        assert uid["ChecksumType"] == "FULL_OBJECT"
        done_parts = []
        for number, part in enumerate(parts, start=1):
            resp = client.upload_part(
                Bucket="b", Key="full", UploadId=uid["UploadId"], PartNumber=number,
                Body=part, ChecksumAlgorithm="CRC64NVME",
            )  # fmt: skip
            done_parts.append({"PartNumber": number, "ETag": resp["ETag"]})
        done = client.complete_multipart_upload(
            Bucket="b", Key="full", UploadId=uid["UploadId"],
            MultipartUpload={"Parts": done_parts},
        )  # fmt: skip
        whole = base64.b64encode(crc("crc64nvme", data)).decode()
        assert (done["ChecksumCRC64NVME"], done["ChecksumType"]) == (whole, "FULL_OBJECT")
        got = client.get_object(Bucket="b", Key="full", ChecksumMode="ENABLED")
        assert got["ChecksumCRC64NVME"] == whole
        assert got["Body"].read() == data  # botocore compared the CRC64NVME it received
        attributes = client.get_object_attributes(
            Bucket="b", Key="full", ObjectAttributes=["Checksum"]
        )
        assert attributes["Checksum"]["ChecksumCRC64NVME"] == whole


def test_part_number_reads(harness: Harness, proxy: InProcProxy) -> None:
    """(From tests/test_multipart.py.)"""
    client = proxy.client
    parts = [os.urandom(200_003), os.urandom(200_003), os.urandom(1000)]
    total = sum(len(p) for p in parts)
    start = len(parts[0])
    with harness.book.anything():
        upload(client, "p", parts)
        got = client.get_object(Bucket="b", Key="p", PartNumber=2)
        assert got["Body"].read() == parts[1]
        assert got["ContentRange"] == f"bytes {start}-{start + len(parts[1]) - 1}/{total}"
        assert got["PartsCount"] == 3
        head = client.head_object(Bucket="b", Key="p", PartNumber=3)
        assert head["ContentLength"] == 1000 and head["PartsCount"] == 3
        assert error(lambda: client.get_object(Bucket="b", Key="p", PartNumber=4))[1] == (
            "InvalidPartNumber"
        )
        client.put_object(Bucket="b", Key="single", Body=b"just one part")
        one = client.get_object(Bucket="b", Key="single", PartNumber=1)
        assert one["Body"].read() == b"just one part"
        assert one["ContentRange"] == "bytes 0-12/13"


def test_random_ranges_across_segment_and_part_boundaries(
    harness: Harness, proxy: InProcProxy
) -> None:
    """Each range of a known layout is one upstream read of exactly the segments that cover it:
    at most one extra segment per end, plus the headers of parts entered after the first (and
    a trailer where a stream's end is reached). (From tests/test_multipart.py, which measured
    the bytes in the access log; here the span requested is read from the request itself.)"""
    client = proxy.client
    part_sizes = [3 * S + 17, 3 * S + 17, 3 * S + 17, 3 * S + 1]
    parts = [os.urandom(n) for n in part_sizes]
    plaintext = b"".join(parts)
    with harness.book.anything():
        upload(client, "r", parts)
        client.head_object(Bucket="b", Key="r")
    n = len(plaintext)
    rng = random.Random(7)
    boundaries = [sum(part_sizes[:i]) for i in range(1, 4)] + [S, 2 * S, 3 * S + 17 + S]
    starts = [b + d for b in boundaries for d in (-1, 0, 1)] + [rng.randrange(n) for _ in range(6)]
    for start in starts:
        end = min(n - 1, start + rng.choice([0, 1, S - 1, S, 3 * S, 5 * S]))
        with harness.book.anything() as came:
            got = client.get_object(Bucket="b", Key="r", Range=f"bytes={start}-{end}")
            assert got["ContentRange"] == f"bytes {start}-{end}/{n}"
            assert got["Body"].read() == plaintext[start : end + 1]
        assert len(came) == 1 and came[0].method == "GET"
        first, last = map(int, came[0].headers["Range"].removeprefix("bytes=").split("-"))
        segments = (end - start) // S + 2
        entered = sum(1 for b in boundaries[:3] if start < b <= end)
        assert last - first + 1 <= (segments + 1) * (S + 16) + entered * HEADER_SIZE


# ---- copies --------------------------------------------------------------------------------------


def test_copy_object_replace_metadata_keeps_the_copy_readable(
    harness: Harness, proxy: InProcProxy
) -> None:
    """(From tests/test_multipart.py.)"""
    client = proxy.client
    data = os.urandom(3 * S + 5)
    with harness.book.anything():
        client.put_object(Bucket="b", Key="src", Body=data, Metadata={"old": "1"})
        client.copy_object(
            Bucket="b",
            Key="dst",
            CopySource={"Bucket": "b", "Key": "src"},
            MetadataDirective="REPLACE",
            Metadata={"new": "2"},
            ContentType="application/x-test",
        )
        got = client.get_object(Bucket="b", Key="dst")
        assert got["Body"].read() == data
        assert got["Metadata"] == {"new": "2"} and got["ContentType"] == "application/x-test"
    assert harness.store.get("b", "dst").data == harness.store.get("b", "src").data != data


def test_upload_part_copy_of_whole_encrypted_objects(harness: Harness, proxy: InProcProxy) -> None:
    """(From tests/test_multipart.py.)"""
    client = proxy.client
    a, b = os.urandom(200_000), os.urandom(1000)
    with harness.book.anything():
        client.put_object(Bucket="b", Key="a", Body=a)
        client.put_object(Bucket="b", Key="b", Body=b)
        uid = client.create_multipart_upload(Bucket="b", Key="ab")["UploadId"]
        etags = [
            client.upload_part_copy(
                Bucket="b",
                Key="ab",
                UploadId=uid,
                PartNumber=n,
                CopySource={"Bucket": "b", "Key": source},
            )["CopyPartResult"]["ETag"]
            for n, source in ((1, "a"), (2, "b"))
        ]
        assert etags == [md5(a), md5(b)]
        client.complete_multipart_upload(
            Bucket="b",
            Key="ab",
            UploadId=uid,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]
            },
        )
        assert client.get_object(Bucket="b", Key="ab")["Body"].read() == a + b


def test_upload_part_copy_ranges_are_checked_as_s3_checks_them(
    harness: Harness, proxy: InProcProxy
) -> None:
    """(From tests/test_copies.py.)"""
    client = proxy.client
    with harness.book.anything():
        client.put_object(Bucket="b", Key="five", Body=b"12345")
        uid = client.create_multipart_upload(Bucket="b", Key="dest")["UploadId"]
    source = {"Bucket": "b", "Key": "five"}

    def copy(value: str) -> Any:
        return client.upload_part_copy(
            Bucket="b", Key="dest", UploadId=uid, PartNumber=1,
            CopySource=source, CopySourceRange=value,
        )  # fmt: skip

    for bad in [
        "0-2",
        "bytes=0",
        "bytes=hello-world",
        "bytes=0-bar",
        "bytes=hello-",
        "bytes=0-2,3-5",
    ]:
        # (the source is looked at first: its current stored ETag)
        with harness.book.expect(GET("/b/five", Range=FIRST)):
            assert error(lambda v=bad: copy(v))[1] == "InvalidArgument", bad
    with harness.book.expect(GET("/b/five", Range=FIRST)):
        assert error(lambda: copy("bytes=0-21"))[1] == "InvalidRange"
    with harness.book.anything():
        part = copy("bytes=1-3")
        assert part["CopyPartResult"]["ETag"] == md5(b"234")
        client.complete_multipart_upload(
            Bucket="b",
            Key="dest",
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]},
        )
        assert client.get_object(Bucket="b", Key="dest")["Body"].read() == b"234"
