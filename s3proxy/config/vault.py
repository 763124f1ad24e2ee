"""Vault's settings: the address, the login, the transit key and the data-key caches."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from s3proxy.config.values import ConfigError, _http_url, _number, _require

METHODS = ("token", "kubernetes", "jwt", "approle")


DEFAULT_SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@dataclass(frozen=True)
class VaultAuthSettings:
    method: str = "token"
    token: str | None = None
    token_file: str | None = None
    role: str | None = None
    mount: str | None = None  # auth mount path; default: the method's name
    jwt_file: str = DEFAULT_SA_TOKEN
    role_id: str | None = None
    secret_id: str | None = None
    secret_id_file: str | None = None

    @property
    def can_login(self) -> bool:
        return self.method != "token" or self.token_file is not None


@dataclass(frozen=True)
class CacheLimits:
    datakey_max_age: float = 300.0
    datakey_max_streams: int = 100_000
    datakey_max_bytes: int = 64 * 1024**3
    unwrapped_ttl: float = 300.0
    unwrapped_entries: int = 10_000

    @property
    def reuse_data_keys(self) -> bool:
        return (
            self.datakey_max_age > 0 and self.datakey_max_streams > 0 and self.datakey_max_bytes > 0
        )

    @property
    def cache_unwrapped(self) -> bool:
        return self.unwrapped_ttl > 0 and self.unwrapped_entries > 0


@dataclass(frozen=True)
class VaultSettings:
    """Where Vault is, how the proxy logs in, its transit key and the data-key caches."""

    addr: str
    auth: VaultAuthSettings
    transit_key: str
    transit_mount: str = "transit"
    client_cert: tuple[str, str] | None = None
    check_interval: float = 5.0  # seconds between reachability checks
    cache_limits: CacheLimits = field(default_factory=CacheLimits)
    cacert: str | None = None
    namespace: str | None = None
    timeout: float = 10.0  # seconds before a Vault call counts as failed


def _vault(values: Mapping[str, str | None]) -> VaultSettings:
    addr = _http_url("VAULT_ADDR", _require(values, "VAULT_ADDR"))
    auth = _vault_auth(values)
    client_cert = _client_cert(values)
    check_interval = _number(values, "S3PROXY_VAULT_CHECK_INTERVAL", positive=True)
    cache_limits = _cache_limits(values)
    transit_key = _require(values, "S3PROXY_VAULT_TRANSIT_KEY")
    transit_mount = _require(values, "S3PROXY_VAULT_TRANSIT_MOUNT").strip("/")
    timeout = _number(values, "S3PROXY_VAULT_TIMEOUT", positive=True)
    if not timeout > 0:  # NaN
        raise ConfigError("S3PROXY_VAULT_TIMEOUT must be positive")
    return VaultSettings(
        addr=addr,
        auth=auth,
        transit_key=transit_key,
        transit_mount=transit_mount,
        client_cert=client_cert,
        check_interval=check_interval,
        cache_limits=cache_limits,
        cacert=values["VAULT_CACERT"],
        namespace=values["VAULT_NAMESPACE"],
        timeout=timeout,
    )


def _cache_limits(values: Mapping[str, str | None]) -> CacheLimits:
    return CacheLimits(
        datakey_max_age=_number(values, "S3PROXY_DATAKEY_REUSE_SECONDS"),
        datakey_max_streams=int(_number(values, "S3PROXY_DATAKEY_REUSE_STREAMS")),
        datakey_max_bytes=int(_number(values, "S3PROXY_DATAKEY_REUSE_BYTES")),
        unwrapped_ttl=_number(values, "S3PROXY_KEY_CACHE_SECONDS"),
        unwrapped_entries=int(_number(values, "S3PROXY_KEY_CACHE_ENTRIES")),
    )


def _vault_auth(values: Mapping[str, str | None]) -> VaultAuthSettings:
    method = _require(values, "S3PROXY_VAULT_AUTH").lower()
    if method not in METHODS:
        raise ConfigError(f"S3PROXY_VAULT_AUTH must be one of {', '.join(METHODS)}, got {method!r}")
    settings = VaultAuthSettings(
        method=method,
        token=values["VAULT_TOKEN"],
        token_file=values["S3PROXY_VAULT_TOKEN_FILE"],
        role=values["S3PROXY_VAULT_ROLE"],
        mount=(values["S3PROXY_VAULT_AUTH_MOUNT"] or "").strip("/") or None,
        jwt_file=_require(values, "S3PROXY_VAULT_JWT_FILE"),
        role_id=values["S3PROXY_VAULT_ROLE_ID"],
        secret_id=values["S3PROXY_VAULT_SECRET_ID"],
        secret_id_file=values["S3PROXY_VAULT_SECRET_ID_FILE"],
    )
    if method == "token" and not (settings.token or settings.token_file):
        raise ConfigError("VAULT_TOKEN is required (or S3PROXY_VAULT_TOKEN_FILE)")
    if method in ("kubernetes", "jwt") and not settings.role:
        raise ConfigError(f"S3PROXY_VAULT_ROLE is required with S3PROXY_VAULT_AUTH={method}")
    if method == "approle" and not settings.role_id:
        raise ConfigError("S3PROXY_VAULT_ROLE_ID is required with S3PROXY_VAULT_AUTH=approle")
    if method == "approle" and not (settings.secret_id or settings.secret_id_file):
        raise ConfigError("S3PROXY_VAULT_SECRET_ID is required (or S3PROXY_VAULT_SECRET_ID_FILE)")
    return settings


def _client_cert(values: Mapping[str, str | None]) -> tuple[str, str] | None:
    cert, key = values["VAULT_CLIENT_CERT"], values["VAULT_CLIENT_KEY"]
    if bool(cert) != bool(key):
        raise ConfigError("VAULT_CLIENT_CERT and VAULT_CLIENT_KEY go together")
    return (cert, key) if cert and key else None
