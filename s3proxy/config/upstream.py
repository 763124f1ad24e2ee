"""The upstream's settings: the store, its credentials and how uploads are checked."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from s3proxy.config.proxies import ProxyEnvironment
from s3proxy.config.values import ConfigError, _choice, _from_file, _http_url, _require
from s3proxy.core.trailing import UPSTREAM_CHECKSUMS

# S3PROXY_UPSTREAM_CHECKSUM: the algorithms of core/trailing.py, which upstream/forms.py frames.
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


@dataclass(frozen=True)
class UpstreamSettings:
    """The store the proxy writes to, the proxy's own credentials for it, and its TLS."""

    endpoint: str
    region: str
    credentials: CredentialSettings
    ca_bundle: str | None = None  # CA bundle for the upstream's TLS certificate
    checksum: str = "auto"  # auto, crc32, crc32c, crc64nvme, signed or off
    # HTTPS_PROXY, HTTP_PROXY, NO_PROXY as read at start (docs/operations.md)
    proxies: ProxyEnvironment = field(default_factory=ProxyEnvironment)


def _upstream(values: Mapping[str, str | None], env: Mapping[str, str]) -> UpstreamSettings:
    region = (
        values["S3PROXY_S3_REGION"]
        or env.get("AWS_REGION")
        or env.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    endpoint_value = values["S3PROXY_S3_ENDPOINT"]
    if endpoint_value:
        endpoint = _http_url("S3PROXY_S3_ENDPOINT", endpoint_value)
    elif region == "auto":
        endpoint = "https://storage.googleapis.com"
    else:
        endpoint = f"https://s3.{region}.amazonaws.com"
    checksum = _choice(values, "S3PROXY_UPSTREAM_CHECKSUM", UPSTREAM_CHECKSUM_SETTINGS)
    credentials = _credentials(values, env, region)
    ca_bundle = values["S3PROXY_S3_CA_BUNDLE"]
    if ca_bundle and not os.path.isfile(ca_bundle):
        raise ConfigError(f"S3PROXY_S3_CA_BUNDLE is not a readable file: {ca_bundle!r}")
    proxies = ProxyEnvironment.of(env)
    parts = urlsplit(endpoint)
    try:
        proxies.proxy_for(parts.scheme, parts.hostname or "", parts.port or 0)
    except ValueError as exc:
        name = "HTTPS_PROXY" if parts.scheme == "https" else "HTTP_PROXY"
        raise ConfigError(f"{name}: {exc}") from exc
    return UpstreamSettings(
        endpoint=endpoint,
        region=region,
        credentials=credentials,
        ca_bundle=ca_bundle,
        checksum=checksum,
        proxies=proxies,
    )


def _credentials(
    values: Mapping[str, str | None], env: Mapping[str, str], region: str
) -> CredentialSettings:
    access_key = values["S3PROXY_S3_ACCESS_KEY_ID"]
    secret_key = _from_file(values, "S3PROXY_S3_SECRET_ACCESS_KEY")
    if access_key and not secret_key:
        raise ConfigError("S3PROXY_S3_SECRET_ACCESS_KEY is required with S3PROXY_S3_ACCESS_KEY_ID")
    if secret_key and not access_key:
        raise ConfigError("S3PROXY_S3_ACCESS_KEY_ID is required with S3PROXY_S3_SECRET_ACCESS_KEY")
    if values["S3PROXY_S3_EXTERNAL_ID"] and not values["S3PROXY_S3_ROLE_ARN"]:
        raise ConfigError("S3PROXY_S3_EXTERNAL_ID needs S3PROXY_S3_ROLE_ARN")
    # AWS_ENDPOINT_URL_STS names an endpoint for exactly the proxy's own calls; the workload's
    # AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_S3 (this proxy) are never used for them.
    sts_endpoint = values["S3PROXY_STS_ENDPOINT"] or env.get("AWS_ENDPOINT_URL_STS") or None
    return CredentialSettings(
        region=region,
        access_key_id=access_key,
        secret_access_key=secret_key,
        session_token=_from_file(values, "S3PROXY_S3_SESSION_TOKEN"),
        role_arn=values["S3PROXY_S3_ROLE_ARN"],
        external_id=values["S3PROXY_S3_EXTERNAL_ID"],
        role_session_name=_require(values, "S3PROXY_S3_ROLE_SESSION_NAME"),
        sts_endpoint=_http_url("S3PROXY_STS_ENDPOINT", sts_endpoint) if sts_endpoint else None,
    )
