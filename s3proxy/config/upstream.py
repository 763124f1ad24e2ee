"""The upstream's settings: the store, its credentials and how uploads are checked."""

from __future__ import annotations

from dataclasses import dataclass

from s3proxy.core.trailing import UPSTREAM_CHECKSUMS

UPSTREAM_CHECKSUM_SETTINGS = ("auto", *UPSTREAM_CHECKSUMS, "signed", "off")


@dataclass(frozen=True)
class CredentialSettings:
    region: str
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    role_session_name: str = "s3proxy"
    sts_endpoint: str | None = None
