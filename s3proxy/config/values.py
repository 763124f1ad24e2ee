"""Raw setting values from flags, the environment and defaults, and the checks every group
of settings shares (required, numbers, names, URLs, files, listen addresses)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from s3proxy.config.table import SETTINGS


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable."""


def add_flags(parser: argparse.ArgumentParser) -> None:
    for s in SETTINGS:
        default = f" (default {s.default})" if s.default else ""
        parser.add_argument(s.flag, dest=s.env, help=f"{s.help}; env {s.env}{default}")


def flag_values(
    namespace: argparse.Namespace, names: Sequence[str] | None = None
) -> dict[str, str | None]:
    names = names or [s.env for s in SETTINGS]
    return {n: getattr(namespace, n, None) for n in names}


def _raw(env: Mapping[str, str], flags: Mapping[str, str | None]) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for s in SETTINGS:
        flag_value = flags.get(s.env)
        env_value = env.get(s.env) or None
        values[s.env] = flag_value if flag_value is not None else env_value or s.default
    return values


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (value or "").split(",") if n.strip())


def _require(values: Mapping[str, str | None], name: str) -> str:
    value = values.get(name)
    if not value:
        raise ConfigError(f"{name} is required")
    return value


def _number(values: Mapping[str, str | None], name: str, *, positive: bool = False) -> float:
    text = _require(values, name)
    try:
        number = float(text)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {text!r}") from exc
    if number < 0 or (positive and number == 0):
        raise ConfigError(f"{name} must be {'positive' if positive else 'zero or more'}")
    return number


def _choice(
    values: Mapping[str, str | None], name: str, choices: Sequence[str], *, upper: bool = False
) -> str:
    """A required setting that is one of ``choices`` (given, and compared, in lower case, or in
    upper case with ``upper``)."""
    text = _require(values, name)
    value = text.upper() if upper else text.lower()
    if value not in choices:
        raise ConfigError(f"{name} must be {_alternatives(choices)}, got {value!r}")
    return value


def _alternatives(choices: Sequence[str]) -> str:
    """``a, b or c``."""
    return f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]


def _flag(values: Mapping[str, str | None], name: str) -> bool:
    """A required true-or-false setting."""
    return _choice(values, name, ("true", "false")) == "true"


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
