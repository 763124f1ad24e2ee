"""All settings (:class:`Config`) and their resolution (:func:`load`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from s3proxy.config.listeners import TlsSettings, _check_reach, _client_keys, _tls
from s3proxy.config.metadatacache import MetadataCacheSettings, _metadata_cache
from s3proxy.config.ops import BodySettings, OpsSettings, _bodies, _ops
from s3proxy.config.upstream import UpstreamSettings, _upstream
from s3proxy.config.values import (
    ConfigError,
    _choice,
    _flag,
    _listen,
    _names,
    _raw,
    _require,
)
from s3proxy.config.vault import VaultSettings, _vault
from s3proxy.core.sizes import MAX_SEGMENT_SIZE
from s3proxy.core.unencrypted import UnencryptedPolicy, parse_before

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Config:
    listen_host: str
    listen_port: int
    upstream: UpstreamSettings
    vault: VaultSettings
    virtual_host_suffixes: tuple[str, ...]
    allowed_hosts: tuple[str, ...]
    cors_origins: tuple[str, ...]
    unencrypted: UnencryptedPolicy
    segment_size: int
    exact_list_sizes: bool
    max_requests: int
    multipart_manifest: bool
    log_level: str
    bind_names: bool = False  # streams bound to their bucket and key
    unbound: UnencryptedPolicy = field(
        default_factory=UnencryptedPolicy
    )  # with bind_names: unbound streams allowed
    client_keys: dict[str, str] | None = None  # workload keys, when client authentication is on
    ops: OpsSettings = field(default_factory=OpsSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    bodies: BodySettings = field(default_factory=BodySettings)
    metadata_cache: MetadataCacheSettings = field(default_factory=MetadataCacheSettings)


def load(
    env: Mapping[str, str] | None = None, flags: Mapping[str, str | None] | None = None
) -> Config:
    """Resolve the configuration from flags, then the environment, then defaults."""
    env = os.environ if env is None else env
    values = _raw(env, flags or {})
    host, port = _listen(_require(values, "S3PROXY_LISTEN"))
    remote = _flag(values, "S3PROXY_ALLOW_REMOTE_CLIENTS")
    client_keys = _client_keys(values)
    _check_reach("S3PROXY_LISTEN", host, port, remote and client_keys is not None)
    tls = _tls(values, remote and client_keys is not None)
    upstream = _upstream(values, env)
    vault = _vault(values)
    return Config(
        listen_host=host,
        listen_port=port,
        upstream=upstream,
        vault=vault,
        virtual_host_suffixes=_suffixes(values),
        allowed_hosts=_names(values.get("S3PROXY_ALLOWED_HOSTS")),
        cors_origins=_names(values.get("S3PROXY_CORS_ORIGINS")),
        unencrypted=_allowance(values, "UNENCRYPTED"),
        segment_size=_segment_size(values),
        exact_list_sizes=_choice(values, "S3PROXY_LIST_SIZES", ("exact", "stored")) == "exact",
        max_requests=_max_requests(values),
        multipart_manifest=(
            _choice(values, "S3PROXY_MULTIPART_MANIFEST", ("tagging", "off")) == "tagging"
        ),
        bind_names=_flag(values, "S3PROXY_BIND_OBJECT_NAMES"),
        unbound=_allowance(values, "UNBOUND"),
        log_level=_choice(values, "S3PROXY_LOG_LEVEL", LOG_LEVELS, upper=True),
        client_keys=client_keys,
        ops=_ops(values),
        tls=tls,
        bodies=_bodies(values),
        metadata_cache=_metadata_cache(values),
    )


def _suffixes(values: Mapping[str, str | None]) -> tuple[str, ...]:
    return tuple(
        s.strip().strip(".")
        for s in _require(values, "S3PROXY_VIRTUAL_HOST_SUFFIX").split(",")
        if s.strip()
    )


def _segment_size(values: Mapping[str, str | None]) -> int:
    text = _require(values, "S3PROXY_SEGMENT_SIZE")
    if not text.isdigit() or not 1024 <= int(text) <= MAX_SEGMENT_SIZE:
        raise ConfigError(
            f"S3PROXY_SEGMENT_SIZE must be an integer from 1024 to {MAX_SEGMENT_SIZE}"
        )
    return int(text)


def _max_requests(values: Mapping[str, str | None]) -> int:
    text = _require(values, "S3PROXY_MAX_REQUESTS")
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"S3PROXY_MAX_REQUESTS must be a positive integer, got {text!r}")
    return int(text)


def _allowance(values: Mapping[str, str | None], group: str) -> UnencryptedPolicy:
    """A migration allowance: ``S3PROXY_<group>_OBJECTS`` (allow or refuse), narrowed by
    ``_PREFIXES`` and ``_BEFORE`` (S3PROXY_UNENCRYPTED_*, S3PROXY_UNBOUND_*)."""
    name = f"S3PROXY_{group}_OBJECTS"
    mode = _choice(values, name, ("allow", "refuse"))
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
