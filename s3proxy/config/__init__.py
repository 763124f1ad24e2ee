"""Settings, from environment variables with a command-line flag for each.

A missing or invalid setting raises :class:`ConfigError` naming the variable; ``s3proxy serve``
prints it as one line and exits non-zero.

The package: the table of settings (``table``), the raw values and the checks they share
(``values``), a module per group of settings with its dataclass and its loader (``vault``,
``upstream``, ``listeners``, ``ops``, ``metadatacache``), and :class:`Config` with
:func:`load` (``settings``).
"""

from __future__ import annotations

from s3proxy.config.listeners import TlsSettings
from s3proxy.config.metadatacache import MetadataCacheSettings
from s3proxy.config.ops import BodySettings, OpsSettings, parse_workers
from s3proxy.config.settings import Config, load
from s3proxy.config.table import SETTINGS, Setting
from s3proxy.config.upstream import (
    UPSTREAM_CHECKSUM_SETTINGS,
    CredentialSettings,
    UpstreamSettings,
)
from s3proxy.config.values import ConfigError, add_flags, flag_values, redact_url
from s3proxy.config.vault import (
    DEFAULT_SA_TOKEN,
    METHODS,
    CacheLimits,
    VaultAuthSettings,
    VaultSettings,
)

__all__ = [
    "DEFAULT_SA_TOKEN",
    "METHODS",
    "SETTINGS",
    "UPSTREAM_CHECKSUM_SETTINGS",
    "BodySettings",
    "CacheLimits",
    "Config",
    "ConfigError",
    "CredentialSettings",
    "MetadataCacheSettings",
    "OpsSettings",
    "Setting",
    "TlsSettings",
    "UpstreamSettings",
    "VaultAuthSettings",
    "VaultSettings",
    "add_flags",
    "flag_values",
    "load",
    "parse_workers",
    "redact_url",
]
