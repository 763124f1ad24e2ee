"""All settings (:class:`Config`) and their resolution (:func:`load`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from s3proxy.config.listeners import TlsSettings, _check_reach, _client_keys, _tls
from s3proxy.config.ops import BodySettings, OpsSettings, _bodies, _ops
from s3proxy.config.upstream import UPSTREAM_CHECKSUM_SETTINGS, CredentialSettings
from s3proxy.config.values import (
    ConfigError,
    _from_file,
    _http_url,
    _listen,
    _names,
    _number,
    _raw,
    _require,
)
from s3proxy.config.vault import CacheLimits, VaultAuthSettings, _client_cert, _vault_auth
from s3proxy.core.sizes import MAX_SEGMENT_SIZE
from s3proxy.core.unencrypted import UnencryptedPolicy, parse_before


@dataclass(frozen=True)
class Config:
    listen_host: str
    listen_port: int
    s3_endpoint: str
    s3_region: str
    vault_addr: str
    vault_auth: VaultAuthSettings
    vault_client_cert: tuple[str, str] | None
    vault_check_interval: float
    cache_limits: CacheLimits
    vault_cacert: str | None
    vault_namespace: str | None
    transit_key: str
    transit_mount: str
    vault_timeout: float
    virtual_host_suffixes: tuple[str, ...]
    allowed_hosts: tuple[str, ...]
    cors_origins: tuple[str, ...]
    unencrypted: UnencryptedPolicy
    segment_size: int
    exact_list_sizes: bool
    upstream_checksum: str  # auto, crc32, crc32c, crc64nvme, signed or off
    max_requests: int
    multipart_manifest: bool
    log_level: str
    credentials: CredentialSettings
    s3_ca_bundle: str | None
    bind_names: bool = False  # streams bound to their bucket and key
    unbound: UnencryptedPolicy = field(
        default_factory=UnencryptedPolicy
    )  # with bind_names: unbound streams allowed
    client_keys: dict[str, str] | None = None  # workload keys, when client authentication is on
    ops: OpsSettings = field(default_factory=OpsSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    bodies: BodySettings = field(default_factory=BodySettings)


def load(
    env: Mapping[str, str] | None = None, flags: Mapping[str, str | None] | None = None
) -> Config:
    """Resolve the configuration from flags, then the environment, then defaults."""
    env = os.environ if env is None else env
    values = _raw(env, flags or {})
    host, port = _listen(_require(values, "S3PROXY_LISTEN"))
    remote = _require(values, "S3PROXY_ALLOW_REMOTE_CLIENTS").lower()
    if remote not in ("true", "false"):
        raise ConfigError(f"S3PROXY_ALLOW_REMOTE_CLIENTS must be true or false, got {remote!r}")
    client_keys = _client_keys(values)
    _check_reach("S3PROXY_LISTEN", host, port, remote == "true" and client_keys is not None)
    tls = _tls(values, remote == "true" and client_keys is not None)
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
    timeout_text = _require(values, "S3PROXY_VAULT_TIMEOUT")
    try:
        timeout = float(timeout_text)
    except ValueError as exc:
        raise ConfigError(f"S3PROXY_VAULT_TIMEOUT must be a number, got {timeout_text!r}") from exc
    if not timeout > 0:
        raise ConfigError("S3PROXY_VAULT_TIMEOUT must be positive")
    seg_text = _require(values, "S3PROXY_SEGMENT_SIZE")
    if not seg_text.isdigit() or not 1024 <= int(seg_text) <= MAX_SEGMENT_SIZE:
        raise ConfigError(
            f"S3PROXY_SEGMENT_SIZE must be an integer from 1024 to {MAX_SEGMENT_SIZE}"
        )
    list_sizes = _require(values, "S3PROXY_LIST_SIZES").lower()
    if list_sizes not in ("exact", "stored"):
        raise ConfigError(f"S3PROXY_LIST_SIZES must be exact or stored, got {list_sizes!r}")
    manifest = _require(values, "S3PROXY_MULTIPART_MANIFEST").lower()
    if manifest not in ("tagging", "off"):
        raise ConfigError(f"S3PROXY_MULTIPART_MANIFEST must be tagging or off, got {manifest!r}")
    bind_names = _require(values, "S3PROXY_BIND_OBJECT_NAMES").lower()
    if bind_names not in ("true", "false"):
        raise ConfigError(f"S3PROXY_BIND_OBJECT_NAMES must be true or false, got {bind_names!r}")
    max_requests = _require(values, "S3PROXY_MAX_REQUESTS")
    if not max_requests.isdigit() or int(max_requests) < 1:
        raise ConfigError(f"S3PROXY_MAX_REQUESTS must be a positive integer, got {max_requests!r}")
    upstream_checksum = _require(values, "S3PROXY_UPSTREAM_CHECKSUM").lower()
    if upstream_checksum not in UPSTREAM_CHECKSUM_SETTINGS:
        raise ConfigError(
            "S3PROXY_UPSTREAM_CHECKSUM must be auto, crc32, crc32c, crc64nvme, signed or off, "
            f"got {upstream_checksum!r}"
        )
    level = _require(values, "S3PROXY_LOG_LEVEL").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"S3PROXY_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    suffixes = tuple(
        s.strip().strip(".")
        for s in _require(values, "S3PROXY_VIRTUAL_HOST_SUFFIX").split(",")
        if s.strip()
    )
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
    ca_bundle = values["S3PROXY_S3_CA_BUNDLE"]
    if ca_bundle and not os.path.isfile(ca_bundle):
        raise ConfigError(f"S3PROXY_S3_CA_BUNDLE is not a readable file: {ca_bundle!r}")
    credentials = CredentialSettings(
        region=region,
        access_key_id=access_key,
        secret_access_key=secret_key,
        session_token=_from_file(values, "S3PROXY_S3_SESSION_TOKEN"),
        role_arn=values["S3PROXY_S3_ROLE_ARN"],
        external_id=values["S3PROXY_S3_EXTERNAL_ID"],
        role_session_name=_require(values, "S3PROXY_S3_ROLE_SESSION_NAME"),
        sts_endpoint=_http_url("S3PROXY_STS_ENDPOINT", sts_endpoint) if sts_endpoint else None,
    )
    return Config(
        listen_host=host,
        listen_port=port,
        s3_endpoint=endpoint,
        s3_region=region,
        vault_addr=_http_url("VAULT_ADDR", _require(values, "VAULT_ADDR")),
        vault_auth=_vault_auth(values),
        vault_client_cert=_client_cert(values),
        vault_check_interval=_number(values, "S3PROXY_VAULT_CHECK_INTERVAL", positive=True),
        cache_limits=CacheLimits(
            datakey_max_age=_number(values, "S3PROXY_DATAKEY_REUSE_SECONDS"),
            datakey_max_streams=int(_number(values, "S3PROXY_DATAKEY_REUSE_STREAMS")),
            datakey_max_bytes=int(_number(values, "S3PROXY_DATAKEY_REUSE_BYTES")),
            unwrapped_ttl=_number(values, "S3PROXY_KEY_CACHE_SECONDS"),
            unwrapped_entries=int(_number(values, "S3PROXY_KEY_CACHE_ENTRIES")),
        ),
        vault_cacert=values["VAULT_CACERT"],
        vault_namespace=values["VAULT_NAMESPACE"],
        transit_key=_require(values, "S3PROXY_VAULT_TRANSIT_KEY"),
        transit_mount=_require(values, "S3PROXY_VAULT_TRANSIT_MOUNT").strip("/"),
        vault_timeout=timeout,
        virtual_host_suffixes=suffixes,
        allowed_hosts=_names(values.get("S3PROXY_ALLOWED_HOSTS")),
        cors_origins=_names(values.get("S3PROXY_CORS_ORIGINS")),
        unencrypted=_allowance(values, "UNENCRYPTED"),
        segment_size=int(seg_text),
        exact_list_sizes=list_sizes == "exact",
        upstream_checksum=upstream_checksum,
        max_requests=int(max_requests),
        multipart_manifest=manifest == "tagging",
        bind_names=bind_names == "true",
        unbound=_allowance(values, "UNBOUND"),
        log_level=level,
        credentials=credentials,
        s3_ca_bundle=ca_bundle,
        client_keys=client_keys,
        ops=_ops(values),
        tls=tls,
        bodies=_bodies(values),
    )


def _allowance(values: Mapping[str, str | None], group: str) -> UnencryptedPolicy:
    """A migration allowance: ``S3PROXY_<group>_OBJECTS`` (allow or refuse), narrowed by
    ``_PREFIXES`` and ``_BEFORE`` (S3PROXY_UNENCRYPTED_*, S3PROXY_UNBOUND_*)."""
    name = f"S3PROXY_{group}_OBJECTS"
    mode = _require(values, name).lower()
    if mode not in ("allow", "refuse"):
        raise ConfigError(f"{name} must be allow or refuse, got {mode!r}")
    before_name = f"S3PROXY_{group}_BEFORE"
    before_text = values.get(before_name)
    try:
        before = parse_before(before_text) if before_text else None
    except ValueError as exc:
        raise ConfigError(f"{before_name} must be an ISO 8601 time, got {before_text!r}") from exc
    return UnencryptedPolicy(
        allow=mode == "allow",
        prefixes=_names(values.get(f"S3PROXY_{group}_PREFIXES")),
        before=before,
    )
