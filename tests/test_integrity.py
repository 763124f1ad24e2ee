"""The storage provider as the adversary: objects tampered with in the store (issue 9). Each
test builds the tampered object with direct access to the store and shows a failed read, never
wrong bytes."""

from __future__ import annotations

import os
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3proxy.core.sizes import DEFAULT_SEGMENT_SIZE, ciphertext_length
from s3proxy.devstack import S3Server, Vault, start_s3
from tests.conftest import ProxyProcess, start_proxy, upload_multipart

MiB = 1024 * 1024


def _stored(raw: Any, bucket: str, key: str) -> tuple[bytes, dict[str, str]]:
    got = raw.get_object(Bucket=bucket, Key=key)
    return got["Body"].read(), got["Metadata"]


def _read_fails(client: Any, bucket: str, key: str) -> None:
    for call in (client.get_object, client.head_object):
        with pytest.raises(ClientError) as err:
            resp = call(Bucket=bucket, Key=key)
            if "Body" in resp:
                resp["Body"].read()
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500, call


def test_a_single_object_remarked_as_multipart_with_a_stream_appended_fails(
    client: Any, raw: Any, bucket: str
) -> None:
    client.put_object(Bucket=bucket, Key="whole", Body=os.urandom(1000))
    upload_multipart(client, bucket, "mp", [os.urandom(5 * MiB), os.urandom(100)])
    whole, meta = _stored(raw, bucket, "whole")
    mp, mp_meta = _stored(raw, bucket, "mp")
    part_two = mp[-(256 + 100 + 16 + 80) :]  # the last part's stream
    meta["s3proxy-encryption"] = mp_meta["s3proxy-encryption"]  # now says multipart
    raw.put_object(Bucket=bucket, Key="whole", Body=whole + part_two, Metadata=meta)
    _read_fails(client, bucket, "whole")


def test_a_part_served_as_a_whole_object_fails(client: Any, raw: Any, bucket: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(100)]
    upload_multipart(client, bucket, "mp", parts)
    client.put_object(Bucket=bucket, Key="victim", Body=b"the real object")
    mp, _ = _stored(raw, bucket, "mp")
    _, meta = _stored(raw, bucket, "victim")
    raw.put_object(Bucket=bucket, Key="victim", Body=mp[-(256 + 100 + 16 + 80) :], Metadata=meta)
    _read_fails(client, bucket, "victim")


def _raw_get(proxy: ProxyProcess, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """An unsigned request straight to the proxy (it ignores the client's signature)."""
    request = urllib.request.Request(f"{proxy.endpoint}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_a_stale_if_range_gets_the_decrypted_object_never_ciphertext(
    proxy: ProxyProcess, client: Any, bucket: str
) -> None:
    data = os.urandom(100_000)
    etag = client.put_object(Bucket=bucket, Key="ir", Body=data)["ETag"]
    ranged = {"Range": "bytes=10-19"}
    assert _raw_get(proxy, f"/{bucket}/ir", {**ranged, "If-Range": etag}) == (206, data[10:20])
    stale = '"0123456789abcdef0123456789abcdef"'
    assert _raw_get(proxy, f"/{bucket}/ir", {**ranged, "If-Range": stale}) == (200, data)
    old_date = "Sat, 01 Jan 2000 00:00:00 GMT"
    assert _raw_get(proxy, f"/{bucket}/ir", {**ranged, "If-Range": old_date}) == (200, data)


class RangeIgnoringUpstream:
    """A loopback relay in front of an S3 server that removes ``Range`` from every request,
    as some S3-compatible stores ignore it: ranged GETs get 200 and the whole object."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.stripped = 0
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
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _requests(self, src: socket.socket, dst: socket.socket) -> None:
        reader = src.makefile("rb")
        try:
            while True:
                head = []
                while (line := reader.readline()) not in (b"\r\n", b""):
                    head.append(line)
                if not head:
                    return
                kept = [h for h in head if not h.lower().startswith(b"range:")]
                self.stripped += len(head) - len(kept)
                dst.sendall(b"".join(kept) + b"\r\n")
                length = next(
                    (
                        int(h.split(b":", 1)[1])
                        for h in kept
                        if h.lower().startswith(b"content-length:")
                    ),
                    0,
                )
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

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    def close(self) -> None:
        self._listener.close()


def test_an_upstream_that_ignores_range_still_yields_the_right_plaintext(
    workdir: Path, vault: Vault
) -> None:
    moto = start_s3(workdir, enforce_signatures=False)
    relay = RangeIgnoringUpstream(int(moto.endpoint.rsplit(":", 1)[1]))
    ignoring = S3Server(moto.process, f"http://127.0.0.1:{relay.port}", "k", "s")
    proxy = start_proxy(workdir, vault, ignoring)
    try:
        client = proxy.client()
        client.create_bucket(Bucket="ranges")
        data = os.urandom(300_000)
        client.put_object(Bucket="ranges", Key="single", Body=data)
        parts = [os.urandom(5 * MiB), os.urandom(70_000)]
        upload_multipart(client, "ranges", "multi", parts)
        joined = b"".join(parts)
        got = client.get_object(Bucket="ranges", Key="single", Range="bytes=70000-200000")
        assert got["Body"].read() == data[70000:200001]
        assert got["ContentRange"] == f"bytes 70000-200000/{len(data)}"
        got = client.get_object(
            Bucket="ranges", Key="multi", Range=f"bytes={5 * MiB - 5}-{5 * MiB + 9}"
        )
        assert got["Body"].read() == joined[5 * MiB - 5 : 5 * MiB + 10]
        part = client.get_object(Bucket="ranges", Key="multi", PartNumber=2)
        assert part["Body"].read() == parts[1]
        assert client.head_object(Bucket="ranges", Key="multi")["ContentLength"] == len(joined)
        assert client.get_object(Bucket="ranges", Key="multi")["Body"].read() == joined
        assert relay.stripped > 0  # the upstream really saw no Range
    finally:
        proxy.stop()
        relay.close()
        moto.stop()


def _stored_with_tags(raw: Any, bucket: str, key: str) -> tuple[bytes, dict[str, str], str]:
    body, meta = _stored(raw, bucket, key)
    tags = raw.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return body, meta, "&".join(f"{t['Key']}={t['Value']}" for t in tags)


def test_multipart_objects_with_parts_dropped_reordered_duplicated_or_swapped_fail(
    client: Any, raw: Any, bucket: str
) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(100)]
    upload_multipart(client, bucket, "mp", parts)
    upload_multipart(client, bucket, "other", [os.urandom(5 * MiB), os.urandom(100)])
    assert client.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"".join(parts)
    stored, meta, tags = _stored_with_tags(raw, bucket, "mp")
    assert "s3proxy-manifest=" in tags  # recorded at CompleteMultipartUpload
    big = ciphertext_length(5 * MiB, DEFAULT_SEGMENT_SIZE, 3)
    s1, s2, s3 = stored[:big], stored[big : 2 * big], stored[2 * big :]
    foreign = _stored(raw, bucket, "other")[0][big:]
    variants = {
        "last part dropped": s1 + s2,
        "middle part dropped": s1 + s3,
        "reordered": s2 + s1 + s3,
        "duplicated": s1 + s1 + s2 + s3,
        "another upload's part": s1 + s2 + foreign,
    }
    for name, body in variants.items():
        raw.put_object(Bucket=bucket, Key=name, Body=body, Metadata=meta, Tagging=tags)
        if name == "reordered":
            # Its end and stored size are the object's: a HEAD, which reads only the record
            # and the last footer, answers what the record holds; any read refuses it.
            head = client.head_object(Bucket=bucket, Key=name)
            assert head["ETag"] == client.head_object(Bucket=bucket, Key="mp")["ETag"]
            with pytest.raises(ClientError) as err:
                client.get_object(Bucket=bucket, Key=name)["Body"].read()
            assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
            continue
        _read_fails(client, bucket, name)
    raw.put_object(Bucket=bucket, Key="untagged", Body=stored, Metadata=meta)  # manifest gone
    _read_fails(client, bucket, "untagged")
    raw.put_object(Bucket=bucket, Key="intact", Body=stored, Metadata=meta, Tagging=tags)
    assert client.get_object(Bucket=bucket, Key="intact")["Body"].read() == b"".join(parts)


def test_clients_never_see_or_lose_the_manifest_tag(client: Any, raw: Any, bucket: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(10)]
    uid = client.create_multipart_upload(Bucket=bucket, Key="t", Tagging="team=a")["UploadId"]
    etags = [
        client.upload_part(Bucket=bucket, Key="t", UploadId=uid, PartNumber=i + 1, Body=p)["ETag"]
        for i, p in enumerate(parts)
    ]
    client.complete_multipart_upload(
        Bucket=bucket,
        Key="t",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]},
    )
    assert client.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [
        {"Key": "team", "Value": "a"}
    ]
    assert client.head_object(Bucket=bucket, Key="t").get("TagCount") in (None, 1)
    assert client.get_object(Bucket=bucket, Key="t", Range="bytes=0-9")["TagCount"] == 1
    client.put_object_tagging(
        Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "team", "Value": "b"}]}
    )
    assert client.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [
        {"Key": "team", "Value": "b"}
    ]
    client.delete_object_tagging(Bucket=bucket, Key="t")
    assert client.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    stored_tags = raw.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]
    assert [t["Key"] for t in stored_tags] == ["s3proxy-manifest"]
    assert client.get_object(Bucket=bucket, Key="t")["Body"].read() == b"".join(parts)
    client.copy_object(
        Bucket=bucket,
        Key="t2",
        CopySource={"Bucket": bucket, "Key": "t"},
        TaggingDirective="REPLACE",
        Tagging="x=y",
    )
    assert client.get_object(Bucket=bucket, Key="t2")["Body"].read() == b"".join(parts)
    assert client.get_object_tagging(Bucket=bucket, Key="t2")["TagSet"] == [
        {"Key": "x", "Value": "y"}
    ]
