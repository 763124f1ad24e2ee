"""The proxy's own credentials, end to end against moto's IAM, STS and S3 with signature
enforcement: static keys, AssumeRole with an external ID, EKS Pod Identity, IRSA, refresh of
short-lived credentials, a private CA, and GCS-style signing."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from s3proxy.devstack import S3Server, Vault, start_s3
from tests.conftest import ProxyProcess, start_proxy
from tests.credential_peers import ContainerCredentials, WebIdentitySts

ACCOUNT = "123456789012"


def _policy(action: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}],
        }
    )


@dataclass
class Iam:
    s3: S3Server
    tag: str
    static_key: dict[str, str]  # a user allowed s3:*
    assumer_key: dict[str, str]  # a user allowed only sts:AssumeRole
    writer_arn: str  # role allowed s3:*, assumable with the external id
    pod_arn: str  # role allowed s3:*, assumable without one
    hop_arn: str  # role allowed only sts:AssumeRole
    external_id: str

    def mint(self, role_arn: str) -> dict[str, Any]:
        sts = self.s3.client(
            "sts",
            aws_access_key_id=self.assumer_key["AccessKeyId"],
            aws_secret_access_key=self.assumer_key["SecretAccessKey"],
        )
        creds: dict[str, Any] = sts.assume_role(
            RoleArn=role_arn, RoleSessionName="minted", DurationSeconds=900
        )["Credentials"]
        return creds


@pytest.fixture(scope="module")
def iam(s3: S3Server) -> Iam:
    client = s3.client("iam")
    tag = uuid.uuid4().hex[:8]

    def user(name: str, action: str) -> dict[str, str]:
        client.create_user(UserName=name)
        client.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=_policy(action))
        key: dict[str, str] = client.create_access_key(UserName=name)["AccessKey"]
        return key

    def role(name: str, action: str, external_id: str | None = None) -> str:
        statement: dict[str, Any] = {
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": "sts:AssumeRole",
        }
        if external_id:
            statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
        trust = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        arn: str = client.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        client.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=_policy(action))
        return arn

    external_id = f"ext-{tag}"
    return Iam(
        s3=s3,
        tag=tag,
        static_key=user(f"static-{tag}", "s3:*"),
        assumer_key=user(f"assumer-{tag}", "sts:AssumeRole"),
        writer_arn=role(f"writer-{tag}", "s3:*", external_id),
        pod_arn=role(f"pod-{tag}", "s3:*"),
        hop_arn=role(f"hop-{tag}", "sts:AssumeRole"),
        external_id=external_id,
    )


# The proxy's environment starts from the admin's keys; these tests replace them.
NO_AWS_KEYS = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}


@pytest.fixture
def run_proxy(workdir: Path, vault: Vault, s3: S3Server) -> Iterator[Any]:
    started: list[ProxyProcess] = []

    def run(extra: dict[str, str]) -> ProxyProcess:
        p = start_proxy(workdir, vault, s3, {**NO_AWS_KEYS, **extra})
        started.append(p)
        return p

    yield run
    for p in started:
        p.stop()


def whoami(proxy: ProxyProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.port}/_s3proxy/whoami", timeout=30) as r:
        found: dict[str, Any] = json.loads(r.read())
        return found


def _round_trip(proxy: ProxyProcess, bucket: str) -> None:
    c = proxy.client(retries={"max_attempts": 1})
    c.put_object(Bucket=bucket, Key="who", Body=b"payload")
    assert c.get_object(Bucket=bucket, Key="who")["Body"].read() == b"payload"


def _start_line(proxy: ProxyProcess, timeout: float = 10.0) -> None:
    """Wait for the start line naming the upstream identity (written once the proxy listens,
    after an STS call of its own)."""
    deadline = time.monotonic() + timeout
    while "identity" not in proxy.log_text():
        assert time.monotonic() < deadline, proxy.log_text()
        time.sleep(0.05)


def _no_secrets(proxy: ProxyProcess, *secrets: str) -> None:
    text = proxy.log_text() + json.dumps(whoami(proxy))
    for secret in secrets:
        assert secret not in text


def test_static_proxy_keys_win_over_the_chain(
    run_proxy: Any, iam: Iam, s3: S3Server, bucket: str
) -> None:
    proxy = run_proxy(
        {
            "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG0",
            "AWS_SECRET_ACCESS_KEY": "wrong",
            "S3PROXY_S3_ACCESS_KEY_ID": iam.static_key["AccessKeyId"],
            "S3PROXY_S3_SECRET_ACCESS_KEY": iam.static_key["SecretAccessKey"],
            "S3PROXY_STS_ENDPOINT": s3.endpoint,
        }
    )
    _round_trip(proxy, bucket)
    me = whoami(proxy)
    assert me["credentials"]["source"] == "S3PROXY_S3_ACCESS_KEY_ID"
    assert me["credentials"]["access_key_id"] == iam.static_key["AccessKeyId"]
    assert me["caller_identity"]["arn"] == f"arn:aws:iam::{ACCOUNT}:user/static-{iam.tag}"
    assert me["upstream"] == {"endpoint": s3.endpoint, "region": "us-east-1"}
    _start_line(proxy)
    assert iam.static_key["AccessKeyId"] in proxy.log_text()
    _no_secrets(proxy, iam.static_key["SecretAccessKey"])


def test_assume_role_with_external_id_chained_from_static_keys(
    run_proxy: Any, iam: Iam, s3: S3Server, bucket: str
) -> None:
    base = {
        "S3PROXY_S3_ACCESS_KEY_ID": iam.assumer_key["AccessKeyId"],
        "S3PROXY_S3_SECRET_ACCESS_KEY": iam.assumer_key["SecretAccessKey"],
        "S3PROXY_STS_ENDPOINT": s3.endpoint,
    }
    alone = run_proxy(base)  # the assumer itself may not touch S3
    with pytest.raises(ClientError) as err:
        _round_trip(alone, bucket)
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    proxy = run_proxy(
        {**base, "S3PROXY_S3_ROLE_ARN": iam.writer_arn, "S3PROXY_S3_EXTERNAL_ID": iam.external_id}
    )
    _round_trip(proxy, bucket)
    me = whoami(proxy)
    assert (
        me["credentials"]["source"] == f"S3PROXY_S3_ACCESS_KEY_ID then AssumeRole {iam.writer_arn}"
    )
    assert (
        me["caller_identity"]["arn"]
        == f"arn:aws:sts::{ACCOUNT}:assumed-role/writer-{iam.tag}/s3proxy"
    )
    assert me["credentials"]["access_key_id"].startswith("ASIA")
    _no_secrets(proxy, iam.assumer_key["SecretAccessKey"])
    wrong = run_proxy(
        {**base, "S3PROXY_S3_ROLE_ARN": iam.writer_arn, "S3PROXY_S3_EXTERNAL_ID": "not-it"}
    )
    with pytest.raises(ClientError) as err:
        _round_trip(wrong, bucket)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert "AccessDenied" in wrong.log_text()


def test_pod_identity_container_credentials(
    run_proxy: Any, iam: Iam, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    token = f"pod-identity-token-{uuid.uuid4()}"
    (tmp_path / "token").write_text(token)
    endpoint = ContainerCredentials(iam.mint, iam.pod_arn, token, lifetime=3600)
    try:
        proxy = run_proxy(
            {
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.uri,
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(tmp_path / "token"),
                "S3PROXY_STS_ENDPOINT": s3.endpoint,
            }
        )
        _round_trip(proxy, bucket)
        me = whoami(proxy)
        assert me["credentials"]["source"] == "container-role"
        assert me["caller_identity"]["arn"].startswith(
            f"arn:aws:sts::{ACCOUNT}:assumed-role/pod-{iam.tag}/"
        )
        assert endpoint.fetches >= 1
        _no_secrets(proxy, token)
    finally:
        endpoint.close()


def _irsa_env(sts: WebIdentitySts, token_file: Path, role_arn: str) -> dict[str, str]:
    return {
        "AWS_ROLE_ARN": role_arn,
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
        "AWS_ROLE_SESSION_NAME": "irsa-session",
        "S3PROXY_STS_ENDPOINT": sts.endpoint,
    }


def test_irsa_web_identity_and_assume_role_chained_from_it(
    run_proxy: Any, iam: Iam, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    token_file = tmp_path / "sa-token"
    token_file.write_text("eyJhbGciOiJSUzI1NiJ9.projected-service-account-token.sig")
    port = int(s3.endpoint.rsplit(":", 1)[1])
    sts = WebIdentitySts(iam.mint, port, lambda: token_file.read_text())
    try:
        proxy = run_proxy(_irsa_env(sts, token_file, iam.pod_arn))
        _round_trip(proxy, bucket)
        me = whoami(proxy)
        assert me["credentials"]["source"] == "assume-role-with-web-identity"
        assert f"assumed-role/pod-{iam.tag}/" in me["caller_identity"]["arn"]
        assert sts.web_identity_calls >= 1
        chained = run_proxy(
            {
                **_irsa_env(sts, token_file, iam.hop_arn),
                "S3PROXY_S3_ROLE_ARN": iam.writer_arn,
                "S3PROXY_S3_EXTERNAL_ID": iam.external_id,
            }
        )
        _round_trip(chained, bucket)
        me = whoami(chained)
        assert me["credentials"]["source"] == (
            f"assume-role-with-web-identity then AssumeRole {iam.writer_arn}"
        )
        assert me["caller_identity"]["arn"].endswith(f"assumed-role/writer-{iam.tag}/s3proxy")
        _no_secrets(chained, token_file.read_text())
    finally:
        sts.close()


def test_short_lived_credentials_refresh_in_the_background(
    run_proxy: Any, iam: Iam, bucket: str, tmp_path: Path
) -> None:
    """Credentials that live 6 s, from an endpoint that takes 1 s to answer: requests keep
    flowing across several refreshes, none fails, and none waits for a refresh (each would
    otherwise take at least a second)."""
    (tmp_path / "token").write_text("t")
    endpoint = ContainerCredentials(iam.mint, iam.pod_arn, "t", lifetime=6, delay=1.0)
    try:
        proxy = run_proxy(
            {
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.uri,
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(tmp_path / "token"),
            }
        )
        client = proxy.client(retries={"max_attempts": 1})
        fetches_at_start = endpoint.fetches
        keys_seen = set()
        slowest = 0.0
        deadline = time.monotonic() + 30
        i = 0
        # until three refreshes have been used (not a fixed time: each refresh is what counts)
        while time.monotonic() < deadline and (
            endpoint.fetches - fetches_at_start < 3 or len(keys_seen) < 3
        ):
            started = time.monotonic()
            client.put_object(Bucket=bucket, Key=f"r{i % 5}", Body=os.urandom(1024))
            client.get_object(Bucket=bucket, Key=f"r{i % 5}")["Body"].read()
            slowest = max(slowest, time.monotonic() - started)
            if i % 20 == 0:
                keys_seen.add(whoami(proxy)["credentials"]["access_key_id"])
            i += 1
        assert endpoint.fetches - fetches_at_start >= 3, endpoint.fetches
        assert len(keys_seen) >= 3
        assert slowest < 0.9, slowest
    finally:
        endpoint.close()


def test_failed_refreshes_are_retried_while_credentials_stay_valid(
    run_proxy: Any, iam: Iam, bucket: str, tmp_path: Path
) -> None:
    """The credentials endpoint fails the next refresh (botocore tries 3 times); the proxy
    logs it, keeps signing with the still-valid credentials, and retries with backoff."""
    (tmp_path / "token").write_text("t")
    endpoint = ContainerCredentials(iam.mint, iam.pod_arn, "t", lifetime=12)
    try:
        proxy = run_proxy(
            {
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.uri,
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(tmp_path / "token"),
                # one process's refreshes (workers would share out the failures between them)
                "S3PROXY_WORKERS": "1",
            }
        )
        client = proxy.client(retries={"max_attempts": 1})
        first_key = whoami(proxy)["credentials"]["access_key_id"]
        endpoint.fail_next = 3
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            client.put_object(Bucket=bucket, Key="during", Body=b"still signing")
            if (
                endpoint.failures >= 3
                and whoami(proxy)["credentials"]["access_key_id"] != first_key
            ):
                break
            time.sleep(0.2)
        assert endpoint.failures >= 3
        assert "refreshing upstream credentials failed" in proxy.log_text()
        assert whoami(proxy)["credentials"]["access_key_id"] != first_key  # recovered
    finally:
        endpoint.close()


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate it signs for localhost."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "s3proxy test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "server.pem", directory / "server.key", directory / "ca.pem")
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths


def test_https_upstream_with_a_private_ca(workdir: Path, vault: Vault, tmp_path: Path) -> None:
    tls = _tls_files(tmp_path)
    secure = start_s3(workdir, tls=tls)
    try:
        secure.client().create_bucket(Bucket="private-ca")
        trusted = start_proxy(workdir, vault, secure, {"S3PROXY_S3_CA_BUNDLE": str(tls[2])})
        untrusted = start_proxy(workdir, vault, secure)
        try:
            _round_trip(trusted, "private-ca")
            with pytest.raises(ClientError) as err:
                untrusted.client(retries={"max_attempts": 1}).list_objects_v2(Bucket="private-ca")
            assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            stored = secure.client().get_object(Bucket="private-ca", Key="who")["Body"].read()
            assert stored != b"payload"
        finally:
            trusted.stop()
            untrusted.stop()
    finally:
        secure.stop()


def test_whoami_answers_loopback_only_and_never_shadows_objects(
    proxy: ProxyProcess, client: Any, bucket: str
) -> None:
    assert whoami(proxy)["vault"]["key"] == "s3proxy"
    # In virtual-hosted style the same path is an object key, served as one.
    client.put_object(Bucket=bucket, Key="_s3proxy/whoami", Body=b"an object")
    req = urllib.request.Request(
        f"http://127.0.0.1:{proxy.port}/_s3proxy/whoami",
        headers={"Host": f"{bucket}.localhost:{proxy.port}"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.read() == b"an object"
