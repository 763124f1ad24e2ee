"""Settings, from environment variables with a command-line flag for each.

A missing or invalid setting raises :class:`ConfigError` naming the variable; ``s3proxy serve``
prints it as one line and exits non-zero.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from s3proxy.core.access import hostname, is_loopback
from s3proxy.core.certs import GeneratedCertificate
from s3proxy.core.cpus import quota_cpus, usable_cpus
from s3proxy.core.sigv4 import parse_credentials_file
from s3proxy.core.sizes import DEFAULT_SEGMENT_SIZE, MAX_SEGMENT_SIZE
from s3proxy.core.trailing import UPSTREAM_CHECKSUMS
from s3proxy.core.unencrypted import UnencryptedPolicy, parse_before

UPSTREAM_CHECKSUM_SETTINGS = ("auto", *UPSTREAM_CHECKSUMS, "signed", "off")


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    env: str
    flag: str
    help: str
    default: str | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting("S3PROXY_LISTEN", "--listen", "address the proxy listens on", "127.0.0.1:8190"),
    Setting(
        "S3PROXY_TLS_LISTEN",
        "--tls-listen",
        "address of an HTTPS listener serving the same proxy, for clients that insist on TLS "
        "(same loopback rules as S3PROXY_LISTEN); none by default",
    ),
    Setting(
        "S3PROXY_TLS_CERT_FILE",
        "--tls-cert-file",
        "its certificate chain (PEM), re-read when the file changes (cert-manager); default: a "
        "certificate for localhost and 127.0.0.1 from a CA made at start",
    ),
    Setting("S3PROXY_TLS_KEY_FILE", "--tls-key-file", "the certificate's private key (PEM)"),
    Setting(
        "S3PROXY_TLS_CA_OUT",
        "--tls-ca-out",
        "without S3PROXY_TLS_CERT_FILE: where the CA made at start is written (PEM), for the "
        "workload to trust (repo1-storage-ca-file, rclone --ca-cert)",
    ),
    Setting(
        "S3PROXY_TLS_CA_BUNDLE_OUT",
        "--tls-ca-bundle-out",
        "... and where it is written followed by the CAs the proxy itself trusts (its system "
        "bundle), for AWS_CA_BUNDLE, which replaces an SDK's trusted CAs",
    ),
    Setting(
        "S3PROXY_S3_ENDPOINT",
        "--s3-endpoint",
        "upstream base URL (default: the AWS regional endpoint of the region)",
    ),
    Setting(
        "S3PROXY_S3_REGION",
        "--s3-region",
        "upstream signing region (default: AWS_REGION, AWS_DEFAULT_REGION, us-east-1); "
        "'auto' for GCS",
    ),
    Setting(
        "S3PROXY_S3_ACCESS_KEY_ID",
        "--s3-access-key-id",
        "the proxy's own static upstream key (default: botocore's credential chain)",
    ),
    Setting(
        "S3PROXY_S3_SECRET_ACCESS_KEY",
        "--s3-secret-access-key",
        "secret of S3PROXY_S3_ACCESS_KEY_ID",
    ),
    Setting(
        "S3PROXY_S3_SECRET_ACCESS_KEY_FILE",
        "--s3-secret-access-key-file",
        "file holding S3PROXY_S3_SECRET_ACCESS_KEY (keeps it out of the environment and argv)",
    ),
    Setting("S3PROXY_S3_SESSION_TOKEN", "--s3-session-token", "session token of the static key"),
    Setting(
        "S3PROXY_S3_SESSION_TOKEN_FILE",
        "--s3-session-token-file",
        "file holding S3PROXY_S3_SESSION_TOKEN",
    ),
    Setting(
        "S3PROXY_S3_ROLE_ARN",
        "--s3-role-arn",
        "AssumeRole into this role with the credentials found first",
    ),
    Setting("S3PROXY_S3_EXTERNAL_ID", "--s3-external-id", "external ID for S3PROXY_S3_ROLE_ARN"),
    Setting(
        "S3PROXY_S3_ROLE_SESSION_NAME",
        "--s3-role-session-name",
        "session name for S3PROXY_S3_ROLE_ARN",
        "s3proxy",
    ),
    Setting(
        "S3PROXY_STS_ENDPOINT",
        "--sts-endpoint",
        "STS endpoint for the proxy's own credential calls (default: AWS's)",
    ),
    Setting(
        "S3PROXY_S3_CA_BUNDLE",
        "--s3-ca-bundle",
        "CA bundle (PEM) that signs the upstream's TLS certificate (default: system CAs)",
    ),
    Setting("S3PROXY_VAULT_TRANSIT_KEY", "--vault-transit-key", "transit key name (required)"),
    Setting(
        "S3PROXY_VAULT_TRANSIT_MOUNT", "--vault-transit-mount", "transit mount path", "transit"
    ),
    Setting("VAULT_ADDR", "--vault-addr", "Vault address (required)"),
    Setting(
        "S3PROXY_VAULT_AUTH",
        "--vault-auth",
        "token, kubernetes, jwt or approle",
        "token",
    ),
    Setting("VAULT_TOKEN", "--vault-token", "Vault token (auth 'token')"),
    Setting(
        "S3PROXY_VAULT_TOKEN_FILE",
        "--vault-token-file",
        "file holding the Vault token, re-read when the token is refused (auth 'token')",
    ),
    Setting("S3PROXY_VAULT_ROLE", "--vault-role", "role to log in as (kubernetes, jwt)"),
    Setting(
        "S3PROXY_VAULT_AUTH_MOUNT",
        "--vault-auth-mount",
        "auth method mount path (default: the method's name)",
    ),
    Setting(
        "S3PROXY_VAULT_JWT_FILE",
        "--vault-jwt-file",
        "service account JWT (kubernetes, jwt)",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
    ),
    Setting("S3PROXY_VAULT_ROLE_ID", "--vault-role-id", "AppRole role ID (approle)"),
    Setting("S3PROXY_VAULT_SECRET_ID", "--vault-secret-id", "AppRole secret ID (approle)"),
    Setting("S3PROXY_VAULT_SECRET_ID_FILE", "--vault-secret-id-file", "file holding the secret ID"),
    Setting("VAULT_CLIENT_CERT", "--vault-client-cert", "client certificate for Vault (PEM)"),
    Setting("VAULT_CLIENT_KEY", "--vault-client-key", "its private key (PEM)"),
    Setting(
        "S3PROXY_VAULT_CHECK_INTERVAL",
        "--vault-check-interval",
        "seconds between Vault reachability checks; writes fail while the last check failed",
        "5",
    ),
    Setting(
        "S3PROXY_DATAKEY_REUSE_SECONDS",
        "--datakey-reuse-seconds",
        "reuse one Vault data key for new objects this long (0: a data key per object)",
        "300",
    ),
    Setting(
        "S3PROXY_DATAKEY_REUSE_STREAMS",
        "--datakey-reuse-streams",
        "... for at most this many objects/parts",
        "100000",
    ),
    Setting(
        "S3PROXY_DATAKEY_REUSE_BYTES",
        "--datakey-reuse-bytes",
        "... and at most this many plaintext bytes",
        str(64 * 1024**3),
    ),
    Setting(
        "S3PROXY_KEY_CACHE_SECONDS",
        "--key-cache-seconds",
        "keep unwrapped data keys for reads this long (0: unwrap at every read)",
        "300",
    ),
    Setting(
        "S3PROXY_KEY_CACHE_ENTRIES",
        "--key-cache-entries",
        "... at most this many of them",
        "10000",
    ),
    Setting("VAULT_CACERT", "--vault-cacert", "CA bundle for Vault's TLS certificate"),
    Setting("VAULT_NAMESPACE", "--vault-namespace", "Vault namespace"),
    Setting(
        "S3PROXY_VAULT_TIMEOUT",
        "--vault-timeout",
        "seconds before a Vault call counts as failed",
        "10",
    ),
    Setting(
        "S3PROXY_VIRTUAL_HOST_SUFFIX",
        "--virtual-host-suffix",
        "comma-separated host suffixes for virtual-hosted style (bucket.<suffix>)",
        "localhost",
    ),
    Setting(
        "S3PROXY_ALLOWED_HOSTS",
        "--allowed-hosts",
        "comma-separated Host names accepted besides loopback names and virtual-host suffixes "
        "(e.g. a Service name); requests naming any other host get 403",
    ),
    Setting(
        "S3PROXY_CORS_ORIGINS",
        "--cors-origins",
        "comma-separated browser origins allowed cross-origin requests (the proxy answers CORS "
        "itself); none by default: requests with another Origin get 403",
    ),
    Setting(
        "S3PROXY_ALLOW_REMOTE_CLIENTS",
        "--allow-remote-clients",
        "'true' to listen on a non-loopback address; needs S3PROXY_CLIENT_AUTH=sigv4",
        "false",
    ),
    Setting(
        "S3PROXY_CLIENT_AUTH",
        "--client-auth",
        "'sigv4' checks each request's SigV4 signature (header, presigned, aws-chunked chunks) "
        "against the workload keys of S3PROXY_CLIENT_CREDENTIALS_FILE before re-signing; 'off' "
        "accepts any signature (loopback sidecar)",
        "off",
    ),
    Setting(
        "S3PROXY_CLIENT_CREDENTIALS_FILE",
        "--client-credentials-file",
        "file of workload keys for S3PROXY_CLIENT_AUTH=sigv4, one "
        "'ACCESS_KEY_ID SECRET_ACCESS_KEY' per line",
    ),
    Setting(
        "S3PROXY_UNENCRYPTED_OBJECTS",
        "--unencrypted-objects",
        "'refuse' answers 403 for objects written without the proxy (plaintext anyone with "
        "access to the bucket could have put there); 'allow' returns them as they are "
        "(migrations), narrowed by the next two settings",
        "refuse",
    ),
    Setting(
        "S3PROXY_UNENCRYPTED_PREFIXES",
        "--unencrypted-prefixes",
        "with 'allow': only objects under these comma-separated bucket/key-prefix entries",
    ),
    Setting(
        "S3PROXY_UNENCRYPTED_BEFORE",
        "--unencrypted-before",
        "with 'allow': only objects last modified before this ISO 8601 time",
    ),
    Setting(
        "S3PROXY_SEGMENT_SIZE",
        "--segment-size",
        "plaintext bytes per encrypted segment for new objects",
        str(DEFAULT_SEGMENT_SIZE),
    ),
    Setting(
        "S3PROXY_LIST_SIZES",
        "--list-sizes",
        "'exact' reports plaintext sizes and ETags in listings (two small reads per object "
        "not seen before, cached); 'stored' reports stored values with no extra requests",
        "exact",
    ),
    Setting(
        "S3PROXY_MULTIPART_MANIFEST",
        "--multipart-manifest",
        "'tagging' records each multipart object's list of parts, authenticated, as an object tag "
        "(needs s3:PutObjectTagging and s3:GetObjectTagging); 'off' for upstreams without object "
        "tagging (GCS): dropped or reordered parts then go undetected",
        "tagging",
    ),
    Setting(
        "S3PROXY_BIND_OBJECT_NAMES",
        "--bind-object-names",
        "'true' binds every stream written to its bucket and key, so ciphertext moved or copied "
        "under another name by the store fails to read; copies to another name are then "
        "re-encrypted through the proxy instead of copied by the store",
        "false",
    ),
    Setting(
        "S3PROXY_UNBOUND_OBJECTS",
        "--unbound-objects",
        "with S3PROXY_BIND_OBJECT_NAMES=true: 'refuse' fails the read of a stream not bound to "
        "its name (written before binding, or unbound ciphertext moved under a bound key); "
        "'allow' reads them (migrations), narrowed by the next two settings",
        "refuse",
    ),
    Setting(
        "S3PROXY_UNBOUND_PREFIXES",
        "--unbound-prefixes",
        "with 'allow': only objects under these comma-separated bucket/key-prefix entries",
    ),
    Setting(
        "S3PROXY_UNBOUND_BEFORE",
        "--unbound-before",
        "with 'allow': only objects last modified before this ISO 8601 time",
    ),
    Setting(
        "S3PROXY_MAX_REQUESTS",
        "--max-requests",
        "requests served at once; more are answered 503 SlowDown, as S3 does under load",
        "256",
    ),
    Setting(
        "S3PROXY_BODY_IDLE_TIMEOUT",
        "--body-idle-timeout",
        "seconds a request body may send nothing; then the request ends with 400 "
        "RequestTimeout and nothing is stored (S3 waits about 20)",
        "20",
    ),
    Setting(
        "S3PROXY_BODY_HELD_TIMEOUT",
        "--body-held-timeout",
        "seconds a body the proxy holds in memory (pass-through bodies up to 1 MiB, "
        "CompleteMultipartUpload, tagging) may take in all",
        "60",
    ),
    Setting(
        "S3PROXY_BODY_MEMORY",
        "--body-memory",
        "bytes of request bodies held in memory at once, per worker; a request that would "
        "pass it is answered 503 SlowDown at once",
        str(64 * 1024 * 1024),
    ),
    Setting(
        "S3PROXY_UPSTREAM_CHECKSUM",
        "--upstream-checksum",
        "how uploads go upstream so the store refuses damaged bytes: 'auto' learns what the "
        "store takes; crc32, crc32c or crc64nvme: an aws-chunked trailer checksum; 'signed': "
        "signed aws-chunked chunks (Ceph RGW before 18); 'off': none (GCS)",
        "auto",
    ),
    Setting("S3PROXY_LOG_LEVEL", "--log-level", "DEBUG, INFO, WARNING or ERROR", "INFO"),
    Setting(
        "S3PROXY_LOG_FORMAT",
        "--log-format",
        "'json': one JSON object a line (time, severity, message, request fields); 'text'",
        "json",
    ),
    Setting(
        "S3PROXY_ADMIN_LISTEN",
        "--admin-listen",
        "address of the admin listener (/startup, /liveness, /readiness, /metrics, "
        "/quitquitquit), reachable by the kubelet; 'off' for none",
        "0.0.0.0:8191",
    ),
    Setting(
        "S3PROXY_READINESS_REQUIRES_VAULT",
        "--readiness-requires-vault",
        "'true': /readiness fails while Vault is unreachable (a sidecar's readiness is the "
        "whole pod's; docs/operations.md)",
        "false",
    ),
    Setting(
        "S3PROXY_SHUTDOWN_DELAY",
        "--shutdown-delay",
        "seconds between SIGTERM (readiness fails at once) and closing the S3 listener",
        "0",
    ),
    Setting(
        "S3PROXY_WORKERS",
        "--workers",
        "worker processes sharing the listen ports (SO_REUSEPORT), each with its own event loop, "
        "Vault login and caches; 'auto': the container's CPU quota (cgroup), within the CPUs "
        "the process may run on; one without a quota",
        "auto",
    ),
    Setting(
        "S3PROXY_SHUTDOWN_GRACE",
        "--shutdown-grace",
        "seconds requests in flight may take to finish once the listener is closed; then they "
        "are cut and the process exits",
        "25",
    ),
)


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
class OpsSettings:
    """How the process is operated: its admin listener, log format and shutdown."""

    admin_listen: tuple[str, int] | None = ("0.0.0.0", 8191)  # None: no admin listener
    readiness_requires_vault: bool = False
    log_format: str = "json"
    shutdown_delay: float = 0.0
    shutdown_grace: float = 25.0
    workers: int = 1


@dataclass(frozen=True)
class TlsSettings:
    """The HTTPS listener (docs/operations.md, HTTPS); ``listen`` None: none."""

    listen: tuple[str, int] | None = None
    cert_file: str | None = None
    key_file: str | None = None
    ca_out: str | None = None
    ca_bundle_out: str | None = None  # the CA followed by the system's
    # The certificate made at start (no cert_file): made once, before workers start, so that
    # every worker serves the certificate of the CA that was written.
    generated: GeneratedCertificate | None = None


@dataclass(frozen=True)
class BodySettings:
    """Bounds on reading request bodies (docs/design.md, Bounds under hostile load)."""

    idle_timeout: float = 20.0  # seconds a body may send nothing (S3 waits about 20)
    held_timeout: float = 60.0  # seconds a body held in memory may take in all
    memory: int = 64 * 1024 * 1024  # bytes of bodies held in memory at once, per process


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


def add_flags(parser: argparse.ArgumentParser) -> None:
    for s in SETTINGS:
        default = f" (default {s.default})" if s.default else ""
        parser.add_argument(s.flag, dest=s.env, help=f"{s.help}; env {s.env}{default}")


def _raw(env: Mapping[str, str], flags: Mapping[str, str | None]) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for s in SETTINGS:
        flag_value = flags.get(s.env)
        env_value = env.get(s.env) or None
        values[s.env] = flag_value if flag_value is not None else env_value or s.default
    return values


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


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (value or "").split(",") if n.strip())


def _require(values: Mapping[str, str | None], name: str) -> str:
    value = values.get(name)
    if not value:
        raise ConfigError(f"{name} is required")
    return value


def redact_url(value: str) -> str:
    """A URL fit for logs and messages: any ``user:password@`` replaced by ``***@``."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        return value
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


def _http_url(name: str, value: str) -> str:
    shown = redact_url(value)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http:// or https:// URL, got {shown!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"{name} must not hold credentials ({shown!r}); give secrets with their own settings "
            "or *_FILE settings"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{name} must be a base URL without a path, got {shown!r}")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConfigError(f"{name} has an invalid port: {shown!r}") from exc
    return f"{parts.scheme}://{parts.netloc}"


def _from_file(values: Mapping[str, str | None], name: str) -> str | None:
    """A secret given directly, or read from the file its ``<name>_FILE`` setting names."""
    value = values.get(name)
    path = values.get(f"{name}_FILE")
    if value or not path:
        return value
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError as exc:
        raise ConfigError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from exc


def _listen(value: str, name: str = "S3PROXY_LISTEN") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{name} must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


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


def _check_reach(name: str, host: str, port: int, remote_allowed: bool) -> None:
    if not is_loopback(hostname(host)) and not remote_allowed:
        raise ConfigError(
            f"{name} {host}:{port} is not a loopback address: anything that reaches it "
            "would use the proxy's identity. Listen on 127.0.0.1, or set both "
            "S3PROXY_ALLOW_REMOTE_CLIENTS=true and S3PROXY_CLIENT_AUTH=sigv4 (with "
            "S3PROXY_CLIENT_CREDENTIALS_FILE) so that only holders of workload keys get in."
        )


def _tls(values: Mapping[str, str | None], remote_allowed: bool) -> TlsSettings:
    """The HTTPS listener's settings; each one without the listener is an error, as is a
    certificate without its key, or a CA to write for a certificate the proxy did not make."""
    listen_text = values.get("S3PROXY_TLS_LISTEN")
    cert, key = values.get("S3PROXY_TLS_CERT_FILE"), values.get("S3PROXY_TLS_KEY_FILE")
    ca_out = values.get("S3PROXY_TLS_CA_OUT")
    bundle_out = values.get("S3PROXY_TLS_CA_BUNDLE_OUT")
    outputs = (("S3PROXY_TLS_CA_OUT", ca_out), ("S3PROXY_TLS_CA_BUNDLE_OUT", bundle_out))
    if not listen_text or listen_text.lower() == "off":
        for name in (
            "S3PROXY_TLS_CERT_FILE",
            "S3PROXY_TLS_KEY_FILE",
            "S3PROXY_TLS_CA_OUT",
            "S3PROXY_TLS_CA_BUNDLE_OUT",
        ):
            if values.get(name):
                raise ConfigError(f"{name} needs S3PROXY_TLS_LISTEN")
        return TlsSettings()
    listen = _listen(listen_text, "S3PROXY_TLS_LISTEN")
    _check_reach("S3PROXY_TLS_LISTEN", *listen, remote_allowed)
    plain = _listen(_require(values, "S3PROXY_LISTEN"))
    admin = values.get("S3PROXY_ADMIN_LISTEN") or "off"
    taken = [plain] + ([] if admin.lower() == "off" else [_listen(admin, "S3PROXY_ADMIN_LISTEN")])
    if listen[1] in {p for _, p in taken}:
        raise ConfigError(
            f"S3PROXY_TLS_LISTEN {listen[0]}:{listen[1]} uses the port of another listener"
        )
    if bool(cert) != bool(key):
        raise ConfigError("S3PROXY_TLS_CERT_FILE and S3PROXY_TLS_KEY_FILE go together")
    for name, out in outputs:
        if cert and out:
            raise ConfigError(
                f"{name} is for the certificate the proxy makes; with "
                "S3PROXY_TLS_CERT_FILE the workload trusts the CA that issued that certificate"
            )
        if out and not os.path.isdir(os.path.dirname(os.path.abspath(out))):
            raise ConfigError(f"{name}: no directory for {out!r}")
    for name, path in (("S3PROXY_TLS_CERT_FILE", cert), ("S3PROXY_TLS_KEY_FILE", key)):
        if path and not os.path.isfile(path):
            raise ConfigError(f"{name} is not a readable file: {path!r}")
    return TlsSettings(
        listen=listen, cert_file=cert, key_file=key, ca_out=ca_out, ca_bundle_out=bundle_out
    )


def _bodies(values: Mapping[str, str | None]) -> BodySettings:
    found = {}
    for name in ("S3PROXY_BODY_IDLE_TIMEOUT", "S3PROXY_BODY_HELD_TIMEOUT", "S3PROXY_BODY_MEMORY"):
        found[name] = _number(values, name, positive=True)
        if not math.isfinite(found[name]):
            raise ConfigError(f"{name} must be a finite number")
    memory = found["S3PROXY_BODY_MEMORY"]
    if memory != int(memory) or memory < 1024 * 1024:
        raise ConfigError("S3PROXY_BODY_MEMORY must be a whole number of bytes, at least 1 MiB")
    return BodySettings(
        idle_timeout=found["S3PROXY_BODY_IDLE_TIMEOUT"],
        held_timeout=found["S3PROXY_BODY_HELD_TIMEOUT"],
        memory=int(memory),
    )


def _ops(values: Mapping[str, str | None]) -> OpsSettings:
    admin = _require(values, "S3PROXY_ADMIN_LISTEN")
    log_format = _require(values, "S3PROXY_LOG_FORMAT").lower()
    if log_format not in ("json", "text"):
        raise ConfigError(f"S3PROXY_LOG_FORMAT must be json or text, got {log_format!r}")
    requires_vault = _require(values, "S3PROXY_READINESS_REQUIRES_VAULT").lower()
    if requires_vault not in ("true", "false"):
        raise ConfigError(
            f"S3PROXY_READINESS_REQUIRES_VAULT must be true or false, got {requires_vault!r}"
        )
    return OpsSettings(
        admin_listen=None if admin.lower() == "off" else _listen(admin, "S3PROXY_ADMIN_LISTEN"),
        readiness_requires_vault=requires_vault == "true",
        log_format=log_format,
        shutdown_delay=_number(values, "S3PROXY_SHUTDOWN_DELAY"),
        shutdown_grace=_number(values, "S3PROXY_SHUTDOWN_GRACE"),
        workers=parse_workers(_require(values, "S3PROXY_WORKERS")),
    )


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def parse_workers(value: str) -> int:
    if value.strip().lower() == "auto":
        quota = quota_cpus(
            _read("/sys/fs/cgroup/cpu.max"),
            _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
            _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
        )
        return usable_cpus(len(os.sched_getaffinity(0)), quota)
    if not value.strip().isdigit() or not 1 <= int(value) <= 64:
        raise ConfigError(f"S3PROXY_WORKERS must be auto or a number from 1 to 64, got {value!r}")
    return int(value)


def _client_keys(values: Mapping[str, str | None]) -> dict[str, str] | None:
    """The workload keys when client authentication is on, else None."""
    mode = _require(values, "S3PROXY_CLIENT_AUTH").lower()
    if mode not in ("off", "sigv4"):
        raise ConfigError(f"S3PROXY_CLIENT_AUTH must be off or sigv4, got {mode!r}")
    path = values.get("S3PROXY_CLIENT_CREDENTIALS_FILE")
    if mode == "off":
        if path:
            raise ConfigError("S3PROXY_CLIENT_CREDENTIALS_FILE needs S3PROXY_CLIENT_AUTH=sigv4")
        return None
    if not path:
        raise ConfigError("S3PROXY_CLIENT_AUTH=sigv4 needs S3PROXY_CLIENT_CREDENTIALS_FILE")
    try:
        with open(path, encoding="utf-8") as handle:
            keys = parse_credentials_file(handle.read())
    except OSError as exc:
        raise ConfigError(
            f"S3PROXY_CLIENT_CREDENTIALS_FILE: cannot read {path}: {exc.strerror}"
        ) from exc
    except ValueError as exc:
        raise ConfigError(f"S3PROXY_CLIENT_CREDENTIALS_FILE {path}: {exc}") from exc
    if not keys:
        raise ConfigError(f"S3PROXY_CLIENT_CREDENTIALS_FILE {path} holds no keys")
    return keys


def _number(values: Mapping[str, str | None], name: str, *, positive: bool = False) -> float:
    text = _require(values, name)
    try:
        number = float(text)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {text!r}") from exc
    if number < 0 or (positive and number == 0):
        raise ConfigError(f"{name} must be {'positive' if positive else 'zero or more'}")
    return number


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


def flag_values(
    namespace: argparse.Namespace, names: Sequence[str] | None = None
) -> dict[str, str | None]:
    names = names or [s.env for s in SETTINGS]
    return {n: getattr(namespace, n, None) for n in names}
