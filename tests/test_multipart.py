"""Multipart uploads, ranged and parallel downloads, copies, through real clients."""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from s3proxy.core.format import parse_header
from s3proxy.core.sizes import DEFAULT_SEGMENT_SIZE, HEADER_SIZE, ciphertext_length
from s3proxy.devstack import S3Server, Vault
from tests.conftest import (
    ProxyProcess,
    aws_cli,
    cli_env,
    start_proxy,
    tree_peak_rss_mib,
    upload_multipart,
)

MiB = 1024 * 1024
S = DEFAULT_SEGMENT_SIZE


def test_aws_cli_multipart_20mib_up_and_down(
    proxy: ProxyProcess, raw: Any, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(20 * MiB))
    env = cli_env(proxy)
    up = subprocess.run(
        [aws_cli(), "s3", "cp", str(src), f"s3://{bucket}/big.bin"],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert up.returncode == 0, up.stderr.decode()
    stored = raw.head_object(Bucket=bucket, Key="big.bin")
    assert stored["ETag"].endswith('-3"')  # 8 MiB parts: it really was a multipart upload
    assert stored["ContentLength"] == 2 * ciphertext_length(8 * MiB, S, 2) + ciphertext_length(
        4 * MiB, S, 2
    )
    ls = subprocess.run(
        [aws_cli(), "s3", "ls", f"s3://{bucket}/"], env=env, capture_output=True, timeout=120
    )
    assert ls.returncode == 0, ls.stderr.decode()
    assert f" {20 * MiB} big.bin" in ls.stdout.decode()
    dst = tmp_path / "back.bin"
    down = subprocess.run(
        [aws_cli(), "s3", "cp", f"s3://{bucket}/big.bin", str(dst)],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert down.returncode == 0, down.stderr.decode()
    assert dst.read_bytes() == src.read_bytes()
    ranged = subprocess.run(
        [
            aws_cli(),
            "s3api",
            "get-object",
            "--bucket",
            bucket,
            "--key",
            "big.bin",
            "--range",
            f"bytes={8 * MiB - 10}-{8 * MiB + 9}",
            str(tmp_path / "part.bin"),
        ],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert ranged.returncode == 0, ranged.stderr.decode()
    assert (tmp_path / "part.bin").read_bytes() == src.read_bytes()[8 * MiB - 10 : 8 * MiB + 10]


def test_boto3_upload_file_and_download_file_in_parallel(
    client: Any, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(37 * MiB + 11))
    config = TransferConfig(
        multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=10
    )
    client.upload_file(str(src), bucket, "t/src.bin", Config=config)
    assert client.head_object(Bucket=bucket, Key="t/src.bin")["ContentLength"] == 37 * MiB + 11
    dst = tmp_path / "dst.bin"
    client.download_file(bucket, "t/src.bin", str(dst), Config=config)
    assert dst.read_bytes() == src.read_bytes()


def test_parts_out_of_order_retried_and_through_another_process(
    workdir: Path, vault: Vault, s3: S3Server, proxy: ProxyProcess, raw: Any, bucket: str
) -> None:
    client = proxy.client()
    parts = [os.urandom(5 * MiB + i * 1000) for i in range(3)] + [os.urandom(123)]
    upload = client.create_multipart_upload(Bucket=bucket, Key="mp", Metadata={"a": "b"})
    uid = upload["UploadId"]
    other = start_proxy(workdir, vault, s3)
    try:
        etags: dict[int, str] = {}
        for number in (4, 2):
            r = client.upload_part(
                Bucket=bucket, Key="mp", UploadId=uid, PartNumber=number, Body=parts[number - 1]
            )
            etags[number] = r["ETag"]
        # Part 3 first with wrong bytes, then retried with the right ones.
        client.upload_part(
            Bucket=bucket, Key="mp", UploadId=uid, PartNumber=3, Body=os.urandom(6 * MiB)
        )
        etags[3] = client.upload_part(
            Bucket=bucket, Key="mp", UploadId=uid, PartNumber=3, Body=parts[2]
        )["ETag"]
        # Part 1 through a second proxy process, which shares nothing with the first.
        etags[1] = other.client().upload_part(
            Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=parts[0]
        )["ETag"]
        listed = client.list_parts(Bucket=bucket, Key="mp", UploadId=uid)
        assert [p["Size"] for p in listed["Parts"]] == [len(p) for p in parts]
        client.complete_multipart_upload(
            Bucket=bucket,
            Key="mp",
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2, 3, 4)]},
        )
    finally:
        other.stop()
    plaintext = b"".join(parts)
    got = client.get_object(Bucket=bucket, Key="mp")
    assert got["ContentLength"] == len(plaintext)
    assert got["Metadata"] == {"a": "b"}
    assert got["Body"].read() == plaintext
    blob = raw.get_object(Bucket=bucket, Key="mp")["Body"].read()
    assert len(blob) == sum(ciphertext_length(len(p), S, 2) for p in parts)
    assert parse_header(blob).plaintext_length == len(parts[0])
    # A fresh proxy with no cached layout reads it too.
    fresh = start_proxy(workdir, vault, s3)
    try:
        assert fresh.client().head_object(Bucket=bucket, Key="mp")["ContentLength"] == len(
            plaintext
        )
        r = fresh.client().get_object(Bucket=bucket, Key="mp", Range="bytes=5242870-10485800")
        assert r["Body"].read() == plaintext[5242870:10485801]
    finally:
        fresh.stop()


def _access_lines(proxy: ProxyProcess) -> list[dict[str, Any]]:
    return [line for line in proxy.log_lines() if "upstream_bytes" in line]


def _upstream_bytes_of_next_request(proxy: ProxyProcess, seen: int) -> int:
    """Upstream bytes of the first access-log line after the first ``seen`` ones (the proxy
    logs a request just after the client has its response, so wait for the line)."""
    deadline = time.monotonic() + 10
    while True:
        lines = _access_lines(proxy)
        if len(lines) > seen:
            return int(lines[seen]["upstream_bytes"])
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_random_ranges_across_segment_and_part_boundaries(proxy: ProxyProcess, bucket: str) -> None:
    client = proxy.client()
    part_sizes = [5 * MiB + 17, 5 * MiB + 17, 5 * MiB + 17, 3 * S + 1]
    parts = [os.urandom(n) for n in part_sizes]
    plaintext = b"".join(parts)
    upload_multipart(client, bucket, "r", parts)
    client.head_object(Bucket=bucket, Key="r")  # discovers and caches the layout
    n = len(plaintext)
    rng = random.Random(7)
    boundaries = [sum(part_sizes[:i]) for i in range(1, 4)] + [S, 2 * S, 5 * MiB + 17 + S]
    starts = [b + d for b in boundaries for d in (-1, 0, 1)] + [rng.randrange(n) for _ in range(6)]
    for start in starts:
        end = min(n - 1, start + rng.choice([0, 1, S - 1, S, 3 * S, 2 * MiB]))
        time.sleep(0.05)
        seen = len(_access_lines(proxy))
        got = client.get_object(Bucket=bucket, Key="r", Range=f"bytes={start}-{end}")
        assert got["ContentRange"] == f"bytes {start}-{end}/{n}"
        assert got["Body"].read() == plaintext[start : end + 1]
        fetched = _upstream_bytes_of_next_request(proxy, seen)
        # Header probe + the segments covering the range: at most one extra segment per end,
        # plus tags and the headers of parts entered after the first.
        segments = (end - start) // S + 2
        entered = sum(1 for b in boundaries[:3] if start < b <= end)
        assert fetched <= HEADER_SIZE + (segments + 1) * (S + 16) + entered * HEADER_SIZE


def test_copy_object_replace_metadata_keeps_the_copy_readable(
    client: Any, raw: Any, bucket: str
) -> None:
    data = os.urandom(3 * S + 5)
    client.put_object(Bucket=bucket, Key="src", Body=data, Metadata={"old": "1"})
    client.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        Metadata={"new": "2"},
        ContentType="application/x-test",
    )
    got = client.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"new": "2"} and got["ContentType"] == "application/x-test"
    assert raw.get_object(Bucket=bucket, Key="dst")["Body"].read() != data


def test_upload_part_copy_of_whole_encrypted_objects(client: Any, bucket: str) -> None:
    a, b = os.urandom(5 * MiB), os.urandom(1000)
    client.put_object(Bucket=bucket, Key="a", Body=a)
    client.put_object(Bucket=bucket, Key="b", Body=b)
    uid = client.create_multipart_upload(Bucket=bucket, Key="ab")["UploadId"]
    e1 = client.upload_part_copy(
        Bucket=bucket,
        Key="ab",
        UploadId=uid,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "a"},
    )["CopyPartResult"]["ETag"]
    e2 = client.upload_part_copy(
        Bucket=bucket,
        Key="ab",
        UploadId=uid,
        PartNumber=2,
        CopySource={"Bucket": bucket, "Key": "b"},
    )["CopyPartResult"]["ETag"]
    client.complete_multipart_upload(
        Bucket=bucket,
        Key="ab",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]},
    )
    assert client.get_object(Bucket=bucket, Key="ab")["Body"].read() == a + b


def test_abort_and_list_uploads_pass_through(client: Any, raw: Any, bucket: str) -> None:
    uid = client.create_multipart_upload(Bucket=bucket, Key="gone")["UploadId"]
    assert [u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [uid]
    client.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=uid)
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_listings_report_plaintext_sizes(client: Any, raw: Any, bucket: str) -> None:
    sizes = {"empty": 0, "one": 1, "a key with spaces+plus": S + 1, "dir/big": 3 * S + 5}
    for key, size in sizes.items():
        client.put_object(Bucket=bucket, Key=key, Body=os.urandom(size))
    parts = [os.urandom(5 * MiB), os.urandom(777)]
    upload_multipart(client, bucket, "multi", parts)
    sizes["multi"] = sum(len(p) for p in parts)
    raw.put_object(Bucket=bucket, Key="plain", Body=b"x" * 5000)  # not written by the proxy
    sizes["plain"] = 5000
    v2 = client.list_objects_v2(Bucket=bucket)
    assert {o["Key"]: o["Size"] for o in v2["Contents"]} == sizes
    v1 = client.list_objects(Bucket=bucket)
    assert {o["Key"]: o["Size"] for o in v1["Contents"]} == sizes
    page = client.list_objects_v2(Bucket=bucket, Prefix="dir/", Delimiter="/", MaxKeys=1)
    assert [(o["Key"], o["Size"]) for o in page["Contents"]] == [("dir/big", 3 * S + 5)]
    stored = {o["Key"]: o["Size"] for o in raw.list_objects_v2(Bucket=bucket)["Contents"]}
    assert stored["dir/big"] == ciphertext_length(3 * S + 5, S, 2)


def test_version_listings_report_plaintext_sizes(client: Any, bucket: str) -> None:
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = client.put_object(Bucket=bucket, Key="doc", Body=b"a" * 100)["VersionId"]
    v2 = client.put_object(Bucket=bucket, Key="doc", Body=b"b" * 200_000)["VersionId"]
    client.delete_object(Bucket=bucket, Key="doc")
    listed = client.list_object_versions(Bucket=bucket)
    assert {v["VersionId"]: v["Size"] for v in listed["Versions"]} == {v1: 100, v2: 200_000}
    assert len(listed["DeleteMarkers"]) == 1
    old = client.get_object(Bucket=bucket, Key="doc", VersionId=v1)
    assert old["Body"].read() == b"a" * 100
    assert client.head_object(Bucket=bucket, Key="doc", VersionId=v2)["ContentLength"] == 200_000
    client.delete_object(Bucket=bucket, Key="doc", VersionId=v1)
    listed = client.list_object_versions(Bucket=bucket)
    assert [v["VersionId"] for v in listed["Versions"]] == [v2]


def test_part_number_reads(client: Any, bucket: str) -> None:
    parts = [os.urandom(5 * MiB + 3), os.urandom(5 * MiB + 3), os.urandom(1000)]
    upload_multipart(client, bucket, "p", parts)
    total = sum(len(p) for p in parts)
    start = len(parts[0])
    got = client.get_object(Bucket=bucket, Key="p", PartNumber=2)
    assert got["Body"].read() == parts[1]
    assert got["ContentRange"] == f"bytes {start}-{start + len(parts[1]) - 1}/{total}"
    assert got["PartsCount"] == 3
    head = client.head_object(Bucket=bucket, Key="p", PartNumber=3)
    assert head["ContentLength"] == 1000 and head["PartsCount"] == 3
    with pytest.raises(ClientError) as err:
        client.get_object(Bucket=bucket, Key="p", PartNumber=4)
    assert err.value.response["Error"]["Code"] == "InvalidPartNumber"
    client.put_object(Bucket=bucket, Key="single", Body=b"just one part")
    one = client.get_object(Bucket=bucket, Key="single", PartNumber=1)
    assert one["Body"].read() == b"just one part"
    assert one["ContentRange"] == "bytes 0-12/13"


def test_memory_stays_bounded_whatever_the_object_size(
    workdir: Path, vault: Vault, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    """A 192 MiB object up (one PutObject, streamed) and down through a fresh proxy: the proxy's
    peak resident memory grows by far less than the object."""
    proxy = start_proxy(workdir, vault, s3)
    try:
        client = proxy.client()
        src = tmp_path / "big"
        with src.open("wb") as f:
            for _ in range(192):
                f.write(os.urandom(MiB))
        baseline = tree_peak_rss_mib(proxy.proc.pid)
        with src.open("rb") as f:
            client.put_object(Bucket=bucket, Key="big", Body=f)
        got = client.get_object(Bucket=bucket, Key="big")
        with (tmp_path / "back").open("wb") as out:
            for chunk in got["Body"].iter_chunks(MiB):
                out.write(chunk)
        grown = tree_peak_rss_mib(proxy.proc.pid) - baseline
        assert (tmp_path / "back").stat().st_size == 192 * MiB
        assert grown < 48, f"proxy peak RSS grew by {grown:.0f} MiB"
    finally:
        proxy.stop()


def _error(call: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response["ResponseMetadata"]["HTTPStatusCode"], err.value.response["Error"][
        "Code"
    ]


def test_complete_refuses_part_lists_as_s3_does_and_repeats_as_s3_does(
    workdir: Path, vault: Vault, s3: S3Server, raw: Any, bucket: str
) -> None:
    """A part ETag that is not the part's is ``InvalidPart`` (s3-tests
    ``test_multipart_upload_incorrect_etag``), found before completing where this process sealed
    the part, after it where another did (the upload is then gone and nothing reads); parts out
    of order are ``InvalidPartOrder``, no parts ``MalformedXML``; a part listed twice in a row
    counts once; a Complete repeated after it succeeded is answered again."""
    one = {"S3PROXY_WORKERS": "1"}
    uploader, other = start_proxy(workdir, vault, s3, one), start_proxy(workdir, vault, s3, one)
    try:
        client, elsewhere = uploader.client(), other.client()
        parts = [os.urandom(5 * MiB), os.urandom(1000)]
        key = "wrong-etag"
        uid = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        etags = [
            client.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=i + 1, Body=p)[
                "ETag"
            ]
            for i, p in enumerate(parts)
        ]

        def complete(via: Any, listed: list[tuple[int, str]]) -> Any:
            return via.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=uid,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in listed]},
            )

        wrong = '"ffffffffffffffffffffffffffffffff"'
        assert _error(lambda: complete(client, [(1, etags[0]), (2, wrong)])) == (
            400,
            "InvalidPart",
        )
        assert _error(lambda: complete(client, [(1, etags[0]), (3, etags[1])])) == (
            400,
            "InvalidPart",
        )
        assert _error(lambda: complete(client, [(2, etags[1]), (1, etags[0])])) == (
            400,
            "InvalidPartOrder",
        )
        assert raw.list_parts(Bucket=bucket, Key=key, UploadId=uid)["Parts"]  # still there
        # A part named twice in a row (a retried UploadPart's two answers): the last counts.
        listed = [(1, wrong), (1, etags[0]), (2, etags[1])]
        done = complete(client, listed)
        assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(parts)
        # Repeated, by the same process or another: the same answer.
        assert complete(client, listed)["ETag"] == done["ETag"]
        assert complete(elsewhere, listed)["ETag"] == done["ETag"]
        assert _error(lambda: complete(client, [(1, etags[0]), (2, wrong)]))[0] == 404

        # Parts sealed by another process: the wrong ETag shows only once the upstream has
        # completed; the answer is still InvalidPart, and the object is never readable.
        key = "wrong-etag-elsewhere"
        uid = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        etags = [
            client.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=i + 1, Body=p)[
                "ETag"
            ]
            for i, p in enumerate(parts)
        ]
        assert _error(lambda: complete(elsewhere, [(1, etags[0]), (2, wrong)])) == (
            400,
            "InvalidPart",
        )
        tags = raw.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
        assert [t for t in tags if t["Key"] == "s3proxy-manifest"] == []
        assert _error(lambda: client.get_object(Bucket=bucket, Key=key))[0] == 500
    finally:
        uploader.stop()
        other.stop()
