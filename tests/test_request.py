"""Request parsing, classification and header rules, with plain strings."""

from __future__ import annotations

import pytest

from s3proxy.core.errors import InvalidRequest, NotImplementedByProxy
from s3proxy.core.headers import (
    client_response_headers,
    metadata_directive,
    own_metadata,
    upstream_request_headers,
)
from s3proxy.core.request import Action, Target, classify, parse_target
from s3proxy.core.s3xml import without_checksums

SUFFIXES = ("localhost",)


def test_path_style() -> None:
    t = parse_target("/bkt/a/b%20c.txt?versionId=3", "localhost:8190", SUFFIXES)
    assert (t.bucket, t.key, t.query) == ("bkt", "a/b c.txt", (("versionId", "3"),))


def test_virtual_hosted_style() -> None:
    t = parse_target("/dir/file", "bkt.localhost:8190", SUFFIXES)
    assert (t.bucket, t.key) == ("bkt", "dir/file")
    assert parse_target("/", "bkt.localhost", SUFFIXES).key is None


def test_service_and_bucket_level() -> None:
    assert parse_target("/", "localhost", SUFFIXES).bucket is None
    t = parse_target("/bkt/?list-type=2&prefix=a%2Fb", "localhost", SUFFIXES)
    assert (t.bucket, t.key) == ("bkt", None)
    assert t.param("prefix") == "a/b"


def test_absolute_uri_authority_is_never_used() -> None:
    t = parse_target("http://evil.example:9999/bkt/k?x-id=GetObject", "evil.example", SUFFIXES)
    assert (t.bucket, t.key) == ("bkt", "k")
    assert t.upstream_path() == "/bkt/k?x-id=GetObject"


def test_presign_parameters_are_removed() -> None:
    raw = (
        "/bkt/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20260101%2Fus-east-1"
        "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host"
        "&X-Amz-Security-Token=tok&X-Amz-Signature=abc&versionId=1&AWSAccessKeyId=A&Signature=s"
        "&Expires=1"
    )
    t = parse_target(raw, "localhost", SUFFIXES)
    assert t.query == (("versionId", "1"),)


@pytest.mark.parametrize(
    "key",
    [
        "plain",
        "with space",
        "ümlaut/ß",
        "a+b",
        "percent%41",
        "tilde~x",
        "q?mark",
        "x//y/../z",
        "*!'()",
    ],
)
def test_keys_round_trip_through_the_upstream_path(key: str) -> None:
    t = Target("bkt", key, (("uploads", None), ("prefix", "a b")))
    again = parse_target(t.upstream_path(), None, SUFFIXES)
    assert again == t
    path = t.upstream_path()
    assert " " not in path and "?" not in path.split("?", 1)[0]


def test_invalid_bucket_rejected() -> None:
    with pytest.raises(InvalidRequest):
        parse_target("/bad%2Fbucket/k", None, SUFFIXES)


def _classify(method: str, raw: str, headers: dict[str, str] | None = None) -> Action:
    return classify(method, parse_target(raw, None, SUFFIXES), headers or {}).action


@pytest.mark.parametrize(
    ("method", "raw", "headers", "action"),
    [
        ("PUT", "/b1/k", {}, Action.PUT_OBJECT),
        ("PUT", "/b1/k?x-id=PutObject", {}, Action.PUT_OBJECT),
        ("GET", "/b1/k?x-id=GetObject&versionId=v", {}, Action.GET_OBJECT),
        ("GET", "/b1/k?response-content-type=text/plain", {}, Action.GET_OBJECT),
        ("HEAD", "/b1/k", {}, Action.HEAD_OBJECT),
        ("PUT", "/b1/k?tagging", {}, Action.OBJECT_TAGGING),
        ("DELETE", "/b1/k?tagging", {}, Action.OBJECT_TAGGING),
        ("GET", "/b1/k?tagging&versionId=1", {}, Action.OBJECT_TAGGING),
        ("DELETE", "/b1/k", {}, Action.PASS_THROUGH),
        ("PUT", "/b1/k", {"x-amz-copy-source": "/b1/o"}, Action.COPY_OBJECT),
        ("GET", "/b1?list-type=2&prefix=a", {}, Action.LIST_OBJECTS),
        ("GET", "/b1", {}, Action.LIST_OBJECTS),
        ("GET", "/b1?versions&prefix=a", {}, Action.LIST_OBJECTS),
        ("GET", "/b1?location", {}, Action.PASS_THROUGH),
        ("GET", "/b1/k?partNumber=2", {}, Action.READ_PART),
        ("HEAD", "/b1/k?partNumber=1&versionId=v", {}, Action.READ_PART),
        ("POST", "/b1?delete", {}, Action.PASS_THROUGH),
        ("PUT", "/b1", {}, Action.PASS_THROUGH),
        ("GET", "/", {}, Action.PASS_THROUGH),
        ("POST", "/b1/k?restore", {}, Action.PASS_THROUGH),
        ("POST", "/b1/k?uploads", {}, Action.CREATE_MULTIPART),
        ("PUT", "/b1/k?partNumber=1&uploadId=u", {}, Action.UPLOAD_PART),
        (
            "PUT",
            "/b1/k?partNumber=1&uploadId=u",
            {"x-amz-copy-source": "b/o"},
            Action.UPLOAD_PART_COPY,
        ),
        (
            "PUT",
            "/b1/k?partNumber=1&uploadId=u",
            {"x-amz-copy-source": "b/o", "x-amz-copy-source-range": "bytes=0-9"},
            Action.UPLOAD_PART_COPY,
        ),
        ("POST", "/b1/k?uploadId=u", {}, Action.COMPLETE_MULTIPART),
        ("GET", "/b1/k?attributes", {}, Action.GET_ATTRIBUTES),
        ("GET", "/b1/k?attributes&versionId=v", {}, Action.GET_ATTRIBUTES),
        ("GET", "/b1/k?uploadId=u", {}, Action.LIST_PARTS),
        ("DELETE", "/b1/k?uploadId=u", {}, Action.PASS_THROUGH),
        ("GET", "/b1?uploads", {}, Action.PASS_THROUGH),
        ("GET", "/", {}, Action.PASS_THROUGH),
        (
            "PUT",
            "/b1/k",
            {"x-amz-copy-source": "/b1/o", "x-amz-metadata-directive": "REPLACE"},
            Action.COPY_OBJECT,
        ),
    ],
)
def test_classify(method: str, raw: str, headers: dict[str, str], action: Action) -> None:
    assert _classify(method, raw, headers) is action


@pytest.mark.parametrize(
    ("method", "raw", "headers"),
    [
        ("POST", "/b1", {}),  # browser form upload
        ("POST", "/b1/k?select&select-type=2", {}),
        ("PUT", "/b1/k?partNumber=1", {}),
        ("PUT", "/b1/k?somethingnew", {}),
        ("HEAD", "/b1/k?attributes", {}),
        ("GET", "/b1/k?torrent", {}),
        ("PATCH", "/b1/k", {}),
        ("PUT", "/b1/k", {"x-amz-write-offset-bytes": "100"}),
    ],
)
def test_refused_requests(method: str, raw: str, headers: dict[str, str]) -> None:
    with pytest.raises(NotImplementedByProxy):
        _classify(method, raw, headers)


def test_upstream_request_headers_drop_client_signing_and_hop_by_hop() -> None:
    headers = [
        ("Authorization", "AWS4-HMAC-SHA256 Credential=..."),
        ("X-Amz-Date", "20260101T000000Z"),
        ("X-Amz-Security-Token", "tok"),
        ("X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD"),
        ("Host", "evil.example"),
        ("Connection", "keep-alive, X-Custom-Hop"),
        ("X-Custom-Hop", "1"),
        ("Expect", "100-continue"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "10"),
        ("Content-Type", "text/plain"),
        ("Content-MD5", "abc"),
        ("x-amz-checksum-crc32", "AAAAAA=="),
        ("x-amz-meta-user", "kept"),
        ("x-amz-meta-s3proxy-encryption", "forged"),
    ]
    passed = upstream_request_headers(headers, encrypting=False)
    assert [k for k, _ in passed] == [
        "Content-Type",
        "Content-MD5",
        "x-amz-checksum-crc32",
        "x-amz-meta-user",
    ]
    encrypted = upstream_request_headers(headers, encrypting=True)
    assert [k for k, _ in encrypted] == ["Content-Type", "x-amz-meta-user"]


def test_client_response_headers_hide_ciphertext_facts() -> None:
    headers = [
        ("Content-Length", "300"),
        ("ETag", '"e"'),
        ("x-amz-checksum-crc32", "AAAAAA=="),
        ("x-amz-checksum-type", "FULL_OBJECT"),
        ("x-amz-meta-s3proxy-encryption", "v=1;seg=65536"),
        ("x-amz-meta-user", "u"),
        ("Transfer-Encoding", "chunked"),
    ]
    assert client_response_headers(headers, decrypted=True) == [
        ("ETag", '"e"'),
        ("x-amz-meta-user", "u"),
    ]
    assert [k for k, _ in client_response_headers(headers, decrypted=False)] == [
        "ETag",
        "x-amz-checksum-crc32",
        "x-amz-checksum-type",
        "x-amz-meta-user",
    ]


def test_gcs_headers_are_handled_like_their_s3_twins() -> None:
    sent = upstream_request_headers(
        [("x-goog-meta-s3proxy-encryption", "v=1;seg=1"), ("x-goog-meta-user", "kept")],
        encrypting=True,
    )
    assert sent == [("x-goog-meta-user", "kept")]
    back = client_response_headers(
        [
            ("x-goog-hash", "crc32c=AAAAAA==,md5=AAAA"),
            ("x-goog-stored-content-length", "1234"),
            ("x-goog-meta-s3proxy-encryption", "v=2;seg=65536"),
            ("x-goog-meta-user", "kept"),
            ("x-goog-generation", "17"),
        ],
        decrypted=True,
    )
    assert back == [("x-goog-meta-user", "kept"), ("x-goog-generation", "17")]
    assert (
        own_metadata({"x-goog-meta-s3proxy-encryption": "v=2;seg=8"}, "encryption") == "v=2;seg=8"
    )
    assert metadata_directive({"x-goog-metadata-directive": "replace"}) == "REPLACE"
    assert metadata_directive({}) == "COPY"


def test_copy_results_lose_the_ciphertexts_checksums() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><CopyObjectResult '
        b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ETag>"e"</ETag>'
        b"<LastModified>2026-01-01T00:00:00.000Z</LastModified>"
        b"<ChecksumCRC32>AAAAAA==</ChecksumCRC32><ChecksumType>FULL_OBJECT</ChecksumType>"
        b"</CopyObjectResult>"
    )
    out = without_checksums(body)
    assert b"Checksum" not in out and b"<ETag>" in out and b"LastModified" in out
