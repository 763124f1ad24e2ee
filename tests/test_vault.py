"""Vault in production, against a real OpenBao: AppRole and JWT logins, token renewal and
re-login, data-key caches counted at OpenBao's audit log, and failing closed."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from s3proxy.devstack import S3Server, Vault, start_vault
from tests.conftest import PROXY_WORKERS, ProxyProcess, start_proxy
from tests.test_credentials import whoami

POLICY = """
path "transit/datakey/plaintext/s3proxy" { capabilities = ["update"] }
path "transit/decrypt/s3proxy" { capabilities = ["update"] }
path "transit/hmac/s3proxy" { capabilities = ["update"] }
path "transit/rewrap/s3proxy" { capabilities = ["update"] }
path "transit/keys/s3proxy" { capabilities = ["read"] }
"""


class AuditedVault:
    """An OpenBao dev server whose audit log counts the proxy's Vault calls."""

    def __init__(self, vault: Vault, log: Path) -> None:
        self.vault = vault
        self.log = log

    def calls(self, path: str) -> int:
        count = 0
        for line in self.log.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("type") == "response" and entry.get("request", {}).get("path") == path:
                count += 1
        return count

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, reply = self.vault.api(method, path, body)
        assert status in (200, 204), (path, status, reply)
        return reply


@pytest.fixture
def audited(workdir: Path) -> Iterator[AuditedVault]:
    log = workdir / f"audit-{uuid.uuid4().hex[:8]}.log"
    config = f'audit "file" "counter" {{\n  options {{\n    file_path = "{log}"\n  }}\n}}\n'
    vault = start_vault(workdir, extra_config=config)
    a = AuditedVault(vault, log)
    a.ok("PUT", "sys/policies/acl/s3proxy", {"policy": POLICY})
    yield a
    vault.stop()


def _proxy(
    workdir: Path, audited: AuditedVault, s3: S3Server, extra: dict[str, str]
) -> ProxyProcess:
    return start_proxy(workdir, audited.vault, s3, {"S3PROXY_VAULT_CHECK_INTERVAL": "1", **extra})


def _parallel(n: int, fn: Any) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(fn, range(n)))


@pytest.mark.parametrize("caches", [True, False], ids=["caches-on", "caches-off"])
def test_data_key_caches_cut_vault_calls(
    workdir: Path, audited: AuditedVault, s3: S3Server, bucket: str, caches: bool
) -> None:
    extra = (
        {} if caches else {"S3PROXY_DATAKEY_REUSE_SECONDS": "0", "S3PROXY_KEY_CACHE_SECONDS": "0"}
    )
    proxy = _proxy(workdir, audited, s3, extra)
    try:
        client = proxy.client()
        body = os.urandom(4096)
        _parallel(1000, lambda i: client.put_object(Bucket=bucket, Key=f"o{i}", Body=body))
        _parallel(
            1000,
            lambda i: (
                client.get_object(Bucket=bucket, Key=f"o{i}")["Body"].read() == body
                or pytest.fail("wrong bytes")
            ),
        )
    finally:
        proxy.stop()
    datakeys = audited.calls("transit/datakey/plaintext/s3proxy")
    decrypts = audited.calls("transit/decrypt/s3proxy")
    # Each worker makes its own data keys and checks the key at startup (docs/operations.md).
    if caches:
        limit = 3 * PROXY_WORKERS
        assert datakeys <= limit and decrypts <= limit, (datakeys, decrypts)
    else:
        assert (datakeys, decrypts) == (1000 + PROXY_WORKERS, 1000 + PROXY_WORKERS)


def test_approle_login_renewal_and_relogin_after_revocation(
    workdir: Path, audited: AuditedVault, s3: S3Server, bucket: str
) -> None:
    audited.ok("POST", "sys/auth/approle", {"type": "approle"})
    audited.ok(
        "POST",
        "auth/approle/role/proxy",
        {"token_policies": ["s3proxy"], "token_ttl": "3s", "token_max_ttl": "1h"},
    )
    role_id = audited.ok("GET", "auth/approle/role/proxy/role-id")["data"]["role_id"]
    secret_id = audited.ok("POST", "auth/approle/role/proxy/secret-id")["data"]["secret_id"]
    no_caches = {"S3PROXY_DATAKEY_REUSE_SECONDS": "0", "S3PROXY_KEY_CACHE_SECONDS": "0"}
    proxy = _proxy(
        workdir,
        audited,
        s3,
        {
            "VAULT_TOKEN": "",
            "S3PROXY_VAULT_AUTH": "approle",
            "S3PROXY_VAULT_ROLE_ID": role_id,
            "S3PROXY_VAULT_SECRET_ID": secret_id,
            **no_caches,
            "S3PROXY_WORKERS": "1",  # one process's logins and renewals, as whoami reports them
        },
    )
    try:
        client = proxy.client(retries={"max_attempts": 1})
        deadline = time.monotonic() + 10  # several 3-second token lifetimes
        i = 0
        while time.monotonic() < deadline:
            client.put_object(Bucket=bucket, Key=f"a{i % 3}", Body=b"x" * 100)
            assert client.get_object(Bucket=bucket, Key=f"a{i % 3}")["Body"].read() == b"x" * 100
            i += 1
        info = whoami(proxy)["vault"]
        assert info["auth"] == "approle" and info["logins"] == 1
        assert info["renewals"] >= 2
        # Revoke every token of the role: the next request makes the proxy log in again.
        accessors = audited.ok("LIST", "auth/token/accessors")["data"]["keys"]
        for accessor in accessors:
            found = audited.ok("POST", "auth/token/lookup-accessor", {"accessor": accessor})
            if "s3proxy" in (found["data"].get("policies") or []):
                audited.ok("POST", "auth/token/revoke-accessor", {"accessor": accessor})
        client.put_object(Bucket=bucket, Key="after-revoke", Body=b"y")
        assert client.get_object(Bucket=bucket, Key="after-revoke")["Body"].read() == b"y"
        assert whoami(proxy)["vault"]["logins"] >= 2
        assert secret_id not in proxy.log_text()
    finally:
        proxy.stop()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(key: rsa.RSAPrivateKey, claims: dict[str, Any]) -> str:
    """A JWT signed RS256 by the test's own key (the signature is cryptography's)."""
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{_b64url(signature)}"


def test_jwt_login_with_a_service_account_style_token(
    workdir: Path, audited: AuditedVault, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    audited.ok("POST", "sys/auth/jwt", {"type": "jwt"})
    audited.ok("POST", "auth/jwt/config", {"jwt_validation_pubkeys": [public.decode()]})
    audited.ok(
        "POST",
        "auth/jwt/role/proxy",
        {
            "role_type": "jwt",
            "bound_audiences": ["s3proxy"],
            "user_claim": "sub",
            "token_policies": ["s3proxy"],
            "token_ttl": "1h",
        },
    )
    now = int(time.time())
    token = _jwt(
        key,
        {
            "iss": "https://kubernetes.default.svc",
            "sub": "system:serviceaccount:backup:s3proxy",
            "aud": "s3proxy",
            "iat": now,
            "nbf": now - 5,
            "exp": now + 3600,
        },
    )
    (tmp_path / "sa-token").write_text(token)
    proxy = _proxy(
        workdir,
        audited,
        s3,
        {
            "VAULT_TOKEN": "",
            "S3PROXY_VAULT_AUTH": "jwt",
            "S3PROXY_VAULT_ROLE": "proxy",
            "S3PROXY_VAULT_JWT_FILE": str(tmp_path / "sa-token"),
        },
    )
    try:
        client = proxy.client(retries={"max_attempts": 1})
        client.put_object(Bucket=bucket, Key="jwt", Body=b"via jwt")
        assert client.get_object(Bucket=bucket, Key="jwt")["Body"].read() == b"via jwt"
        assert whoami(proxy)["vault"]["auth"] == "jwt"
        assert token not in proxy.log_text()
    finally:
        proxy.stop()


def test_vault_stopped_writes_fail_closed_cached_reads_go_on(
    workdir: Path, audited: AuditedVault, s3: S3Server, raw: Any, bucket: str
) -> None:
    other = _proxy(workdir, audited, s3, {})
    proxy = _proxy(workdir, audited, s3, {"S3PROXY_VAULT_TIMEOUT": "2"})
    try:
        client = proxy.client(retries={"max_attempts": 1})
        client.put_object(Bucket=bucket, Key="cached", Body=b"read before the outage")
        client.get_object(Bucket=bucket, Key="cached")["Body"].read()
        # Written with another proxy's data key, which this proxy never unwrapped.
        other.client().put_object(Bucket=bucket, Key="uncached", Body=b"never read here")
        audited.vault.stop()
        time.sleep(2.5)  # a reachability check (every second) has failed by now
        started = time.monotonic()
        with pytest.raises(ClientError) as err:
            client.put_object(Bucket=bucket, Key="during", Body=b"must not be stored")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert client.get_object(Bucket=bucket, Key="cached")["Body"].read() == (
            b"read before the outage"
        )
        with pytest.raises(ClientError) as err:
            client.get_object(Bucket=bucket, Key="uncached")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert time.monotonic() - started < 10  # nothing hangs past the Vault timeout
        keys = [o["Key"] for o in raw.list_objects_v2(Bucket=bucket)["Contents"]]
        assert "during" not in keys
        assert whoami(proxy)["vault"]["available"] is False
    finally:
        proxy.stop()
        other.stop()


def test_vault_over_tls_with_its_ca_and_in_a_namespace(
    workdir: Path, s3: S3Server, bucket: str
) -> None:
    vault = start_vault(workdir, tls=True, namespace="team-a")
    try:
        assert vault.addr.startswith("https://") and vault.cacert
        proxy = start_proxy(workdir, vault, s3)  # VAULT_CACERT and VAULT_NAMESPACE set
        try:
            client = proxy.client(retries={"max_attempts": 1})
            client.put_object(Bucket=bucket, Key="ns", Body=b"namespaced key")
            assert client.get_object(Bucket=bucket, Key="ns")["Body"].read() == b"namespaced key"
        finally:
            proxy.stop()
        # Without the CA, or outside the namespace, the proxy cannot get a data key.
        for drop in ("VAULT_CACERT", "VAULT_NAMESPACE"):
            broken = start_proxy(workdir, vault, s3, {drop: ""})
            try:
                with pytest.raises(ClientError) as err:
                    broken.client(retries={"max_attempts": 1}).put_object(
                        Bucket=bucket, Key="no", Body=b"x"
                    )
                assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503, drop
            finally:
                broken.stop()
    finally:
        vault.stop()
