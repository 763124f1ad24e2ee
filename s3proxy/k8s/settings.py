"""The injector's sidecar settings: one table, filled from built-in defaults, a JSON config
file, ``S3PROXY_WEBHOOK_*`` environment variables and flags (the webhook's defaults), then from
``s3proxy.io/<name>`` pod annotations (each pod's own). No I/O here but :func:`load_defaults`'s
read of the config file. The names and their meaning are in docs/kubernetes.md.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from s3proxy import __version__

DOMAIN = "s3proxy.io"
ENV_PREFIX = "S3PROXY_WEBHOOK_"


class SettingsError(ValueError):
    """A setting's value is not understood; the message names the setting."""


def _quantity(value: str) -> bool:
    # A Kubernetes resource quantity: a decimal number with an optional SI or binary suffix.
    return re.fullmatch(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?", value) is not None


def _url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.username


def _name(value: str) -> bool:
    # A DNS-1123 label or subdomain: the names of Secrets, ConfigMaps and Vault roles we accept.
    return re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", value) is not None


def _image(value: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}", value) is not None


def _word(value: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}", value) is not None


def _key_template(value: str) -> bool:
    # A transit key name, in which {namespace} and {serviceaccount} stand for the pod's.
    plain = value.replace("{namespace}", "n").replace("{serviceaccount}", "s")
    return _word(plain) and "{" not in plain and "}" not in plain


def _one_of(*choices: str) -> Callable[[str], bool]:
    return lambda value: value in choices


@dataclass(frozen=True)
class SidecarSetting:
    name: str  # annotation s3proxy.io/<name>, flag --<name>, env S3PROXY_WEBHOOK_<NAME>
    default: str
    valid: Callable[[str], bool]
    help: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper().replace("-", "_")

    @property
    def annotation(self) -> str:
        return f"{DOMAIN}/{self.name}"


SIDECAR_SETTINGS: tuple[SidecarSetting, ...] = (
    SidecarSetting("image", f"s3proxy:{__version__}", _image, "the proxy's container image"),
    SidecarSetting(
        "image-pull-policy",
        "IfNotPresent",
        _one_of("Always", "IfNotPresent", "Never"),
        "its imagePullPolicy",
    ),
    SidecarSetting(
        "sidecar-mode",
        "native",
        _one_of("native", "container"),
        "'native': an init container with restartPolicy Always (Kubernetes >= 1.29); "
        "'container': the first app container, for older clusters",
    ),
    SidecarSetting("vault-addr", "", _url, "VAULT_ADDR of the proxy (required)"),
    SidecarSetting("vault-auth", "kubernetes", _one_of("kubernetes", "jwt"), "S3PROXY_VAULT_AUTH"),
    SidecarSetting(
        "vault-role",
        "",
        _name,
        "S3PROXY_VAULT_ROLE (default: the pod's service account name)",
    ),
    SidecarSetting("vault-auth-mount", "", _word, "S3PROXY_VAULT_AUTH_MOUNT"),
    SidecarSetting(
        "vault-audience",
        "",
        _word,
        "audience of the service-account token the proxy logs in to Vault with (projected into "
        "the proxy container only; default: the API server's own audience)",
    ),
    SidecarSetting("vault-namespace", "", _word, "VAULT_NAMESPACE"),
    SidecarSetting(
        "transit-key",
        "s3proxy",
        _key_template,
        "S3PROXY_VAULT_TRANSIT_KEY; {namespace} and {serviceaccount} stand for the pod's, "
        "for a key per namespace or per service account (e.g. 's3proxy-{namespace}')",
    ),
    SidecarSetting("transit-mount", "", _word, "S3PROXY_VAULT_TRANSIT_MOUNT"),
    SidecarSetting("s3-endpoint", "", _url, "S3PROXY_S3_ENDPOINT"),
    SidecarSetting("s3-region", "", _word, "S3PROXY_S3_REGION ('auto' for GCS)"),
    SidecarSetting(
        "s3-credentials-secret",
        "",
        _name,
        "Secret with the proxy's static keys (access-key-id, secret-access-key), given to the "
        "proxy container only",
    ),
    SidecarSetting(
        "config-map", "", _name, "ConfigMap of further S3PROXY_* settings (envFrom, proxy only)"
    ),
    SidecarSetting(
        "log-level", "", _one_of("", "DEBUG", "INFO", "WARNING", "ERROR"), "S3PROXY_LOG_LEVEL"
    ),
    SidecarSetting("requests-cpu", "250m", _quantity, "the proxy's CPU request"),
    SidecarSetting("requests-memory", "128Mi", _quantity, "its memory request"),
    SidecarSetting("limits-cpu", "1", _quantity, "its CPU limit (one event loop uses one core)"),
    SidecarSetting("limits-memory", "256Mi", _quantity, "its memory limit"),
)
BY_NAME = {s.name: s for s in SIDECAR_SETTINGS}


def check(values: Mapping[str, str], source: str) -> dict[str, str]:
    """``values`` with every name known and every non-empty value valid, else SettingsError."""
    checked: dict[str, str] = {}
    for name, value in values.items():
        setting = BY_NAME.get(name)
        if setting is None:
            raise SettingsError(f"{source}: unknown setting {name!r}")
        if not isinstance(value, str):
            raise SettingsError(f"{source}: {name} must be a string")
        if value and not setting.valid(value):
            raise SettingsError(f"{source}: {name} has an invalid value {value!r}")
        checked[name] = value
    return checked


def add_flags(parser: argparse._ActionsContainer) -> None:
    for s in SIDECAR_SETTINGS:
        default = f" (default {s.default})" if s.default else ""
        parser.add_argument(f"--{s.name}", dest=s.env, help=f"{s.help}; env {s.env}{default}")


def load_defaults(
    env: Mapping[str, str], flags: Mapping[str, str | None], config_file: str | None
) -> dict[str, str]:
    """The webhook's defaults: flags over environment over the JSON config file over built-ins."""
    values = {s.name: s.default for s in SIDECAR_SETTINGS}
    if config_file:
        try:
            with open(config_file, encoding="utf-8") as handle:
                loaded = json.load(handle)
        except (OSError, ValueError) as exc:
            raise SettingsError(f"cannot read the config file {config_file}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise SettingsError(f"{config_file} must hold a JSON object")
        values.update(check(loaded, config_file))
    for s in SIDECAR_SETTINGS:
        given = flags.get(s.env)
        if given is None:
            given = env.get(s.env)
        if given is not None:
            values.update(check({s.name: given}, s.env))
    return values


def for_pod(defaults: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, str]:
    """The pod's settings: its ``s3proxy.io/<name>`` annotations over the defaults. Unknown
    ``s3proxy.io/`` names other than the injector's own markers raise SettingsError."""
    values = dict(defaults)
    own = {f"{DOMAIN}/inject", f"{DOMAIN}/inject-status"}
    for key, value in annotations.items():
        if not key.startswith(f"{DOMAIN}/") or key in own:
            continue
        values.update(check({key.removeprefix(f"{DOMAIN}/"): value}, f"annotation {key}"))
    return values
