"""Client authentication (S3PROXY_CLIENT_AUTH=sigv4): the workload's own SigV4 signature is
checked before the proxy re-signs. AWS's published examples pin the arithmetic; real boto3, the
AWS CLI and presigned URLs show clients work unchanged; forged, expired, unsigned and altered
requests are refused and store nothing."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import shutil
import subprocess
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from aiohttp.test_utils import make_mocked_request
from botocore import UNSIGNED
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from s3proxy.config import ConfigError, load
from s3proxy.core.awschunked import AwsChunkedDecoder
from s3proxy.core.errors import (
    AccessDeniedByProxy,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidRequest,
    InvalidURI,
    MalformedChunk,
    RequestTimeTooSkewed,
    S3ProxyError,
    SignatureDoesNotMatch,
)
from s3proxy.core.sigv4 import (
    SIGNED_CHUNKS_TRAILER,
    ChunkSignatures,
    ClientSignature,
    read_signature,
)
from s3proxy.devstack import S3Server, Vault, boto3_client, clean_env
from s3proxy.server.clientauth import ClientAuthenticator, chunk_signatures
from tests.conftest import SESSION_SECRETS, ProxyProcess, aws_cli, start_proxy

# AWS's documented example key and requests (S3 API reference, "Signature Calculations for the
# Authorization Header" and "Authenticating Requests: Using Query Parameters").
AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_TIME = datetime(2013, 5, 24, 0, 3, tzinfo=UTC)
SCOPE = f"{AK}/20130524/us-east-1/s3/aws4_request"
EMPTY = hashlib.sha256(b"").hexdigest()
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNK_SIGNATURES = (
    (65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
    (1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
    (0, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
)
# The trailer signature aws-c-auth's tests derive from the same example (trailers first, second,
# third after the final chunk above).
TRAILER_SIGNATURE = "df5735bd9f3295cd9386572292562fefc93ba94e80a0a1ddcbd652c4e0a75e6c"

WORKLOAD_KEY = "AKIAWORKLOADKEY00001"
WORKLOAD_SECRET = "workload/secret/for+tests0000000000000000"


def _authenticator(now: datetime = EXAMPLE_TIME) -> ClientAuthenticator:
    return ClientAuthenticator({AK: SK}, now=lambda: now)


def _get_example(
    signature: str = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
) -> Any:
    headers = CIMultiDict(
        {
            "Host": "examplebucket.s3.amazonaws.com",
            "Range": "bytes=0-9",
            "x-amz-content-sha256": EMPTY,
            "x-amz-date": "20130524T000000Z",
            "Authorization": f"AWS4-HMAC-SHA256 Credential={SCOPE},"
            f"SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature={signature}",
        }
    )
    return make_mocked_request("GET", "/test.txt", headers=headers)


def test_aws_header_example_verifies_and_forgeries_do_not() -> None:
    assert _authenticator().verify(_get_example()).access_key == AK
    with pytest.raises(SignatureDoesNotMatch):
        _authenticator().verify(_get_example("0" * 64))
    with pytest.raises(SignatureDoesNotMatch):
        ClientAuthenticator({AK: SK + "x"}, now=lambda: EXAMPLE_TIME).verify(_get_example())
    with pytest.raises(InvalidAccessKeyId):
        ClientAuthenticator({"OTHER": SK}, now=lambda: EXAMPLE_TIME).verify(_get_example())
    with pytest.raises(RequestTimeTooSkewed):
        _authenticator(EXAMPLE_TIME + timedelta(minutes=20)).verify(_get_example())
    changed = _get_example()
    changed = changed.clone(headers={**changed.headers, "Range": "bytes=0-99"})
    with pytest.raises(SignatureDoesNotMatch):
        _authenticator().verify(changed)
    added = _get_example()
    added = added.clone(headers={**added.headers, "x-amz-copy-source": "other/key"})
    with pytest.raises(AccessDeniedByProxy, match="not signed"):
        _authenticator().verify(added)


PRESIGNED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
)


def _presigned(query: str = PRESIGNED_QUERY) -> Any:
    headers = CIMultiDict({"Host": "examplebucket.s3.amazonaws.com"})
    return make_mocked_request("GET", f"/test.txt?{query}", headers=headers)


def test_aws_presigned_example_verifies_within_its_validity_only() -> None:
    assert _authenticator(EXAMPLE_TIME + timedelta(hours=23)).verify(_presigned()).presigned
    with pytest.raises(AccessDeniedByProxy, match="expired"):
        _authenticator(EXAMPLE_TIME + timedelta(days=1, minutes=1)).verify(_presigned())
    with pytest.raises(AccessDeniedByProxy, match="not valid yet"):
        _authenticator(EXAMPLE_TIME - timedelta(hours=1)).verify(_presigned())
    with pytest.raises(SignatureDoesNotMatch):
        _authenticator().verify(_presigned(PRESIGNED_QUERY.replace("86400", "86401")))
    with pytest.raises(AuthorizationQueryParametersError):
        _authenticator().verify(_presigned(PRESIGNED_QUERY.replace("86400", "704800")))


def _chunked_example() -> Any:
    headers = CIMultiDict(
        {
            "Host": "s3.amazonaws.com",
            "x-amz-date": "20130524T000000Z",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
            "Authorization": f"AWS4-HMAC-SHA256 Credential={SCOPE},SignedHeaders=content-encoding;"
            "content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
            f"x-amz-storage-class,Signature={SEED}",
            "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": "66560",
            "Content-Length": "66824",
        }
    )
    return make_mocked_request("PUT", "/examplebucket/chunkObject.txt", headers=headers)


def _chunked_body(chunks: list[tuple[int, str, bytes]]) -> bytes:
    return b"".join(
        f"{size:x};chunk-signature={sig}\r\n".encode() + data + b"\r\n"
        for size, sig, data in chunks
    )


def _decode_example(chunks: list[tuple[int, str, bytes]]) -> bytes:
    request = _chunked_example()
    _authenticator().verify(request)
    decoder = AwsChunkedDecoder(66560, chunk_signatures(request))
    body = _chunked_body(chunks)
    out = b"".join(decoder.feed(body[i : i + 1000]) for i in range(0, len(body), 1000))
    decoder.finish()
    return out


def test_aws_chunked_example_verifies_chunk_by_chunk() -> None:
    good = [(size, sig, b"a" * size) for size, sig in CHUNK_SIGNATURES]
    assert len(good[0][2]) + len(good[1][2]) == 66560
    assert _decode_example(good) == b"a" * 66560
    altered = [*good]
    altered[1] = (1024, altered[1][1], b"a" * 1000 + b"b" + b"a" * 23)
    with pytest.raises(SignatureDoesNotMatch):
        _decode_example(altered)
    swapped = [good[1], good[0], good[2]]
    with pytest.raises(SignatureDoesNotMatch):
        _decode_example(swapped)
    with pytest.raises(SignatureDoesNotMatch):  # the final chunk's signature chains too
        _decode_example([good[0], good[1], (0, good[0][1], b"")])
    request = _chunked_example()
    _authenticator().verify(request)
    unsigned = AwsChunkedDecoder(66560, chunk_signatures(request))
    with pytest.raises(MalformedChunk, match="no chunk-signature"):
        unsigned.feed(b"10000\r\n")


def _example_sign(text: str) -> str:
    signer = S3SigV4Auth(Credentials(AK, SK), "s3", "us-east-1")
    request = AWSRequest(method="PUT", url="http://s3.amazonaws.com/")
    request.context["timestamp"] = "20130524T000000Z"
    return str(signer.signature(text, request))


def test_trailer_signature_matches_aws_c_auth_vector() -> None:
    sig = ClientSignature(
        access_key=AK,
        date="20130524",
        region="us-east-1",
        service="s3",
        signed_headers=("host",),
        signature=SEED,
        timestamp="20130524T000000Z",
        presigned=False,
        expires=None,
        payload_hash=SIGNED_CHUNKS_TRAILER,
        query=(),
    )
    for claimed in (TRAILER_SIGNATURE, "0" * 64):
        chain = ChunkSignatures(sig, _example_sign)
        for size, chunk_sig in CHUNK_SIGNATURES:
            chain.begin(chunk_sig)
            chain.update(b"a" * size)
            chain.end()
        trailers = {"first": "1st", "second": "2nd", "third": "3rd"}
        if claimed == TRAILER_SIGNATURE:
            chain.trailers({**trailers, "x-amz-trailer-signature": claimed})
        else:
            with pytest.raises(SignatureDoesNotMatch):
                chain.trailers({**trailers, "x-amz-trailer-signature": claimed})


@pytest.mark.parametrize(
    ("headers", "query", "error"),
    [
        ({}, "", AccessDeniedByProxy),
        ({"Authorization": "AWS AKID:c2ln"}, "", InvalidRequest),
        ({"Authorization": "AWS4-HMAC-SHA256 Credential=x"}, "", AuthorizationHeaderMalformed),
        (
            {
                "Authorization": f"AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/iam/"
                "aws4_request,SignedHeaders=host,Signature=00",
                "x-amz-date": "20130524T000000Z",
                "x-amz-content-sha256": EMPTY,
            },
            "",
            AuthorizationHeaderMalformed,
        ),
        (
            {
                "Authorization": f"AWS4-HMAC-SHA256 Credential={SCOPE},SignedHeaders=x-amz-date,"
                "Signature=00",
                "x-amz-date": "20130524T000000Z",
                "x-amz-content-sha256": EMPTY,
            },
            "",
            AuthorizationHeaderMalformed,  # host must be signed
        ),
        ({}, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=x", AuthorizationQueryParametersError),
    ],
)
def test_malformed_and_missing_signatures(
    headers: dict[str, str], query: str, error: type[S3ProxyError]
) -> None:
    with pytest.raises(error):
        read_signature(query, CIMultiDict(headers))


@settings(max_examples=300, deadline=None)
@given(
    authorization=st.text(max_size=300),
    query=st.text(max_size=300),
    sha=st.one_of(st.none(), st.text(max_size=80)),
)
def test_any_signature_text_gives_an_s3_error_or_a_signature(
    authorization: str, query: str, sha: str | None
) -> None:
    headers = CIMultiDict({"Authorization": "AWS4-HMAC-SHA256 " + authorization})
    headers["x-amz-date"] = "20130524T000000Z"
    if sha is not None:
        headers["x-amz-content-sha256"] = sha
    with contextlib.suppress(S3ProxyError):
        read_signature(query, headers)


def test_remote_listen_needs_client_authentication(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# workload keys\n{WORKLOAD_KEY} {WORKLOAD_SECRET}\n")
    base = {
        "S3PROXY_VAULT_TRANSIT_KEY": "k",
        "VAULT_ADDR": "http://127.0.0.1:8200",
        "VAULT_TOKEN": "t",
    }
    remote = {**base, "S3PROXY_LISTEN": "0.0.0.0:8190", "S3PROXY_ALLOW_REMOTE_CLIENTS": "true"}
    with pytest.raises(ConfigError, match="S3PROXY_CLIENT_AUTH=sigv4"):
        load(env=remote)
    config = load(
        env={**remote, "S3PROXY_CLIENT_AUTH": "sigv4", "S3PROXY_CLIENT_CREDENTIALS_FILE": str(keys)}
    )
    assert config.client_keys == {WORKLOAD_KEY: WORKLOAD_SECRET}
    with pytest.raises(ConfigError, match="needs S3PROXY_CLIENT_CREDENTIALS_FILE"):
        load(env={**base, "S3PROXY_CLIENT_AUTH": "sigv4"})
    keys.write_text("only-one-field\n")
    with pytest.raises(ConfigError, match="line 1"):
        load(
            env={
                **base,
                "S3PROXY_CLIENT_AUTH": "sigv4",
                "S3PROXY_CLIENT_CREDENTIALS_FILE": str(keys),
            }
        )


# ---- end to end: a proxy process with client authentication ----------------------------------


@pytest.fixture(scope="module")
def authed(workdir: Path, vault: Vault, s3: S3Server) -> Iterator[ProxyProcess]:
    SESSION_SECRETS.append(WORKLOAD_SECRET)
    keys = workdir / "client-keys"
    keys.write_text(f"{WORKLOAD_KEY} {WORKLOAD_SECRET}\n")
    proxy = start_proxy(
        workdir,
        vault,
        s3,
        {"S3PROXY_CLIENT_AUTH": "sigv4", "S3PROXY_CLIENT_CREDENTIALS_FILE": str(keys)},
    )
    yield proxy
    proxy.stop()


def _client(
    proxy: ProxyProcess, key: str = WORKLOAD_KEY, secret: str = WORKLOAD_SECRET, **cfg: Any
) -> Any:
    return boto3_client(
        "s3",
        endpoint_url=proxy.endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="eu-central-1",  # any region: the client's scope is checked, not fixed
        config=BotoConfig(**cfg) if cfg else None,
    )


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def test_boto3_and_presigned_urls_work_with_the_workload_key(
    authed: ProxyProcess, raw: Any, bucket: str
) -> None:
    client = _client(authed)
    data = bytes(range(256)) * 4000
    client.put_object(Bucket=bucket, Key="a b/ü+1", Body=data, Metadata={"who": "me"})
    assert client.get_object(Bucket=bucket, Key="a b/ü+1")["Body"].read() == data
    assert (
        client.get_object(Bucket=bucket, Key="a b/ü+1", Range="bytes=5-9")["Body"].read()
        == data[5:10]
    )
    listed = client.list_objects_v2(Bucket=bucket, Prefix="a b/", Delimiter="/")
    assert [o["Size"] for o in listed["Contents"]] == [len(data)]
    assert raw.get_object(Bucket=bucket, Key="a b/ü+1")["Body"].read() != data  # stored encrypted
    parts = [b"x" * (5 * 1024 * 1024), b"tail"]
    uid = client.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etags = [
        client.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=i + 1, Body=p)["ETag"]
        for i, p in enumerate(parts)
    ]
    client.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]},
    )
    assert client.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"".join(parts)
    client.put_object_tagging(
        Bucket=bucket, Key="mp", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}
    )
    assert client.get_object_tagging(Bucket=bucket, Key="mp")["TagSet"] == [
        {"Key": "k", "Value": "v"}
    ]
    client.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "a b/ü+1"})
    client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "copy"}]})

    url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "mp"})
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.read() == b"".join(parts)
    put_url = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "pre"})
    # (an explicit Content-Type: moto drops form-encoded bodies, urllib's default type)
    request = urllib.request.Request(
        put_url,
        data=b"presigned body",
        method="PUT",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 200
    assert client.get_object(Bucket=bucket, Key="pre")["Body"].read() == b"presigned body"
    tampered = url.replace(f"/{bucket}/mp", f"/{bucket}/pre")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(tampered, timeout=30)
    assert refused.value.code == 403 and b"SignatureDoesNotMatch" in refused.value.read()


def test_the_aws_cli_works_with_the_workload_key(
    authed: ProxyProcess, bucket: str, tmp_path: Path
) -> None:
    env = clean_env(
        {
            "AWS_ENDPOINT_URL_S3": authed.endpoint,
            "AWS_ACCESS_KEY_ID": WORKLOAD_KEY,
            "AWS_SECRET_ACCESS_KEY": WORKLOAD_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
    )
    source = tmp_path / "up.bin"
    source.write_bytes(b"cli" * 3_000_000)  # 9 MB: a multipart upload
    back = tmp_path / "down.bin"
    for args in (
        ["cp", str(source), f"s3://{bucket}/cli"],
        ["cp", f"s3://{bucket}/cli", str(back)],
    ):
        subprocess.run(
            [aws_cli(), "s3", *args], env=env, check=True, capture_output=True, timeout=120
        )
    assert back.read_bytes() == source.read_bytes()


def test_forged_unsigned_and_expired_requests_are_refused(
    authed: ProxyProcess, raw: Any, bucket: str
) -> None:
    raw.put_object(Bucket=bucket, Key="k", Body=b"stored")
    cases = [
        (_client(authed, secret="wrong-secret"), "SignatureDoesNotMatch"),
        (_client(authed, key="AKIAUNKNOWN000000000"), "InvalidAccessKeyId"),
        (_client(authed, signature_version=UNSIGNED), "AccessDenied"),
    ]
    for client, code in cases:
        for call in (
            lambda c=client: c.get_object(Bucket=bucket, Key="k"),
            lambda c=client: c.put_object(Bucket=bucket, Key="new", Body=b"x"),
            lambda c=client: c.list_objects_v2(Bucket=bucket),
        ):
            with pytest.raises(botocore.exceptions.ClientError) as refused:
                call()
            assert _code(refused.value) == code
    keys = [o["Key"] for o in raw.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["k"]
    expired = _client(authed).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1
    )
    import time

    time.sleep(2)
    with pytest.raises(urllib.error.HTTPError) as late:
        urllib.request.urlopen(expired, timeout=30)
    assert late.value.code == 403 and b"expired" in late.value.read()
    conn = http.client.HTTPConnection("127.0.0.1", authed.port, timeout=10)
    conn.request("GET", "/_s3proxy/whoami")
    assert conn.getresponse().status == 403  # the proxy's identity is not shown to strangers
    conn.close()


def _altering(body: bytes) -> Any:
    def hook(request: Any, **_: Any) -> None:
        if request.method == "PUT":
            request.body = body
            request.headers["Content-Length"] = str(len(body))

    return hook


def test_a_body_altered_after_signing_is_refused_and_nothing_is_stored(
    authed: ProxyProcess, raw: Any, bucket: str
) -> None:
    for size in (10, 3 * 1024 * 1024):
        client = _client(authed, retries={"max_attempts": 1})
        client.meta.events.register("before-send.s3.*", _altering(b"Z" * size))
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            client.put_object(Bucket=bucket, Key=f"altered-{size}", Body=b"A" * size)
        assert _code(refused.value) == "XAmzContentSHA256Mismatch"
        with pytest.raises(botocore.exceptions.ClientError):
            raw.head_object(Bucket=bucket, Key=f"altered-{size}")
    client = _client(authed, retries={"max_attempts": 1})
    client.meta.events.register("before-send.s3.PutObjectTagging", _altering(b"<Tagging/>"))
    raw.put_object(Bucket=bucket, Key="tagged", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as tagging:
        client.put_object_tagging(
            Bucket=bucket, Key="tagged", Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}
        )
    assert _code(tagging.value) == "XAmzContentSHA256Mismatch"


class _StreamingSigner(S3SigV4Auth):  # type: ignore[misc]
    """botocore's signer with the seed payload hash of a signed aws-chunked upload; the test's
    client side of the chunk chain is below (the same arithmetic as AWS's example, pinned by
    test_aws_chunked_example_verifies_chunk_by_chunk)."""

    def payload(self, request: AWSRequest) -> str:
        return "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"


def _signed_chunked_put(
    proxy: ProxyProcess, path: str, payload: bytes, corrupt: bool
) -> tuple[int, bytes]:
    signer = _StreamingSigner(Credentials(WORKLOAD_KEY, WORKLOAD_SECRET), "s3", "us-east-1")
    chunks = [payload[i : i + 65536] for i in range(0, len(payload), 65536)] + [b""]
    framed_length = sum(
        len(f"{len(c):x};chunk-signature=".encode()) + 64 + 4 + len(c) for c in chunks
    )
    request = AWSRequest(
        method="PUT",
        url=f"http://127.0.0.1:{proxy.port}{path}",
        headers={
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(payload)),
            "Content-Length": str(framed_length),
        },
    )
    signer.add_auth(request)
    timestamp = request.context["timestamp"]
    scope = signer.credential_scope(request)
    previous = request.headers["Authorization"].rpartition("Signature=")[2]
    body = b""
    for number, chunk in enumerate(chunks):
        text = "\n".join(
            (
                "AWS4-HMAC-SHA256-PAYLOAD",
                timestamp,
                scope,
                previous,
                EMPTY,
                hashlib.sha256(chunk).hexdigest(),
            )
        )
        previous = signer.signature(text, request)
        data = chunk
        if corrupt and number == 1:
            data = b"!" + chunk[1:]
        body += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + data + b"\r\n"
    assert len(body) == framed_length
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        conn.request("PUT", path, body=body, headers=dict(request.headers.items()))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_signed_aws_chunked_uploads_are_checked_chunk_by_chunk(
    authed: ProxyProcess, raw: Any, bucket: str
) -> None:
    payload = bytes(i % 251 for i in range(200_000))
    status, reply = _signed_chunked_put(authed, f"/{bucket}/signed", payload, corrupt=False)
    assert status == 200, reply
    assert _client(authed).get_object(Bucket=bucket, Key="signed")["Body"].read() == payload
    status, reply = _signed_chunked_put(authed, f"/{bucket}/forged", payload, corrupt=True)
    assert status == 403 and b"SignatureDoesNotMatch" in reply
    with pytest.raises(botocore.exceptions.ClientError):
        raw.head_object(Bucket=bucket, Key="forged")


def test_the_js_sdk_streams_uploads_with_the_workload_key(
    authed: ProxyProcess, bucket: str
) -> None:
    """The JS SDK v3 signs the headers and sends STREAMING-UNSIGNED-PAYLOAD-TRAILER."""
    node = shutil.which("node")
    assert node, "node is needed for the JS SDK tests"
    script = Path(__file__).parent / "js" / "s3client.mjs"
    for secret, ok in ((WORKLOAD_SECRET, True), ("not-the-secret", False)):
        env = clean_env(
            {"WORKLOAD_ACCESS_KEY_ID": WORKLOAD_KEY, "WORKLOAD_SECRET_ACCESS_KEY": secret}
        )
        result = subprocess.run(
            [node, str(script), authed.endpoint, bucket, "js", str(300_000)],
            env=env,
            capture_output=True,
            timeout=120,
        )
        if ok:
            assert result.returncode == 0, result.stderr.decode()
            assert json.loads(result.stdout) == {"equal": True, "length": 300_000}
        else:
            assert result.returncode != 0 and b"SignatureDoesNotMatch" in result.stderr


def test_unsigned_goog_headers_and_undecodable_queries_are_refused() -> None:
    """GCS acts on ``x-goog-*`` as S3 on ``x-amz-*`` (a replayed CopyObject plus an added
    ``x-goog-metadata-directive: REPLACE`` dropped the object's metadata); and a query of
    bytes that are not UTF-8 would verify as its replacement-character twin."""
    added = _get_example()
    added = added.clone(headers={**added.headers, "x-goog-metadata-directive": "REPLACE"})
    with pytest.raises(AccessDeniedByProxy, match="x-goog-metadata-directive"):
        _authenticator().verify(added)
    with pytest.raises(InvalidURI):
        read_signature("versionId=%FF", CIMultiDict(_get_example().headers))


def _signed(method: str, url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The headers botocore signs for ``url`` with the workload key (now, any region)."""
    request = AWSRequest(method=method, url=url, headers=extra or {})
    S3SigV4Auth(Credentials(WORKLOAD_KEY, WORKLOAD_SECRET), "s3", "eu-central-1").add_auth(request)
    return dict(request.headers.items())


def _raw(proxy: ProxyProcess, method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request(method, path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    code = ET.fromstring(body).findtext("Code") if body else ""
    return resp.status, code or ""


def test_a_signature_covers_exactly_the_path_and_headers_it_signed(
    authed: ProxyProcess, raw: Any, bucket: str
) -> None:
    """A DELETE signed for ``/b/%EF%BF%BD`` authorised ``DELETE /b/%FF`` (and ``%FE``,
    ``%C0``): the verifier decoded with replacement characters, the router kept the bytes."""
    raw.put_object(Bucket=bucket, Key="\ufffd", Body=b"kept")
    base = f"http://127.0.0.1:{authed.port}"
    signed = _signed("DELETE", f"{base}/{bucket}/%EF%BF%BD")
    for other in ("%FF", "%FE", "%C0"):
        assert _raw(authed, "DELETE", f"/{bucket}/{other}", signed) == (
            403,
            "SignatureDoesNotMatch",
        )
    # Signed for its own bytes, a key that is not UTF-8 is S3's InvalidURI, not a bare 500.
    own = _signed("DELETE", f"{base}/{bucket}/%FF")
    assert _raw(authed, "DELETE", f"/{bucket}/%FF", own) == (400, "InvalidURI")
    own = _signed("GET", f"{base}/{bucket}/%FF")
    assert _raw(authed, "GET", f"/{bucket}/%FF", own) == (400, "InvalidURI")
    assert raw.get_object(Bucket=bucket, Key="\ufffd")["Body"].read() == b"kept"
    # An x-goog-* header added to a signed CopyObject is refused; signed, it passes.
    copy = {"x-amz-copy-source": f"/{bucket}/%EF%BF%BD", "x-amz-metadata-directive": "COPY"}
    signed = _signed("PUT", f"{base}/{bucket}/copy", copy)
    replaced = {**signed, "x-goog-metadata-directive": "REPLACE"}
    assert _raw(authed, "PUT", f"/{bucket}/copy", replaced) == (403, "AccessDenied")
    assert "Contents" not in raw.list_objects_v2(Bucket=bucket, Prefix="copy")
