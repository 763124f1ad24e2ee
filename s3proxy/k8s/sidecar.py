"""The proxy's container, and the volumes only it mounts, built from a pod's settings
(s3proxy/k8s/settings.py). Pure: dictionaries in, dictionaries out. docs/kubernetes.md shows
the result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NAME = "s3proxy"
S3_PORT = 8190
ADMIN_PORT = 8191
# Workloads get the IP, not "localhost": with a host name the SDKs' endpoint rules may address
# bucket.localhost, which does not resolve in a pod (docs/kubernetes.md).
ENDPOINT = f"http://127.0.0.1:{S3_PORT}"
TLS_PORT = 8443
TLS_ENDPOINT = f"https://127.0.0.1:{TLS_PORT}"
UID = 65532

S3_SECRET_VOLUME = "s3proxy-s3-credentials"
S3_SECRET_DIR = "/var/run/secrets/s3proxy.io/s3"
VAULT_TOKEN_VOLUME = "s3proxy-vault-token"
VAULT_TOKEN_DIR = "/var/run/secrets/s3proxy.io/vault"
# With tls: the CA the proxy writes at start, shared with the app containers (memory-backed).
TLS_CA_VOLUME = "s3proxy-tls-ca"
TLS_CA_DIR = "/var/run/s3proxy.io/tls"
TLS_CA_FILE = f"{TLS_CA_DIR}/ca.pem"
# The CA followed by the proxy image's system CAs: AWS_CA_BUNDLE replaces an SDK's trusted CAs,
# and the app may call other AWS endpoints too.
TLS_CA_BUNDLE_FILE = f"{TLS_CA_DIR}/ca-bundle.pem"
VOLUMES = (S3_SECRET_VOLUME, VAULT_TOKEN_VOLUME, TLS_CA_VOLUME)

# In 'container' mode nothing makes the app wait for the proxy but this postStart hook: the
# kubelet starts the next container only once it returns.
WAIT_FOR_STARTUP = (
    "import time, urllib.request as u\n"
    "for _ in range(600):\n"
    "    try:\n"
    f"        u.urlopen('http://127.0.0.1:{ADMIN_PORT}/startup', timeout=1)\n"
    "        break\n"
    "    except OSError:\n"
    "        time.sleep(0.1)\n"
)


def _env(settings: Mapping[str, str], service_account: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "S3PROXY_LISTEN", "value": f"127.0.0.1:{S3_PORT}"},
        {"name": "S3PROXY_ADMIN_LISTEN", "value": f"0.0.0.0:{ADMIN_PORT}"},
        {"name": "VAULT_ADDR", "value": settings["vault-addr"]},
        {"name": "S3PROXY_VAULT_AUTH", "value": settings["vault-auth"]},
        {"name": "S3PROXY_VAULT_ROLE", "value": settings["vault-role"] or service_account},
        {"name": "S3PROXY_VAULT_TRANSIT_KEY", "value": settings["transit-key"]},
    ]
    optional = (
        ("vault-auth-mount", "S3PROXY_VAULT_AUTH_MOUNT"),
        ("vault-namespace", "VAULT_NAMESPACE"),
        ("transit-mount", "S3PROXY_VAULT_TRANSIT_MOUNT"),
        ("s3-endpoint", "S3PROXY_S3_ENDPOINT"),
        ("s3-region", "S3PROXY_S3_REGION"),
        ("log-level", "S3PROXY_LOG_LEVEL"),
    )
    env += [{"name": var, "value": settings[name]} for name, var in optional if settings[name]]
    if tls_on(settings):
        env += [
            {"name": "S3PROXY_TLS_LISTEN", "value": f"127.0.0.1:{TLS_PORT}"},
            {"name": "S3PROXY_TLS_CA_OUT", "value": TLS_CA_FILE},
            {"name": "S3PROXY_TLS_CA_BUNDLE_OUT", "value": TLS_CA_BUNDLE_FILE},
        ]
    env.append({"name": "S3PROXY_VAULT_JWT_FILE", "value": f"{VAULT_TOKEN_DIR}/token"})
    if settings["s3-credentials-secret"]:
        ref = {"name": settings["s3-credentials-secret"], "key": "access-key-id"}
        env += [
            {"name": "S3PROXY_S3_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": ref}},
            {
                "name": "S3PROXY_S3_SECRET_ACCESS_KEY_FILE",
                "value": f"{S3_SECRET_DIR}/secret-access-key",
            },
        ]
    return env


def tls_on(settings: Mapping[str, str]) -> bool:
    return settings["tls"] == "true"


def endpoint(settings: Mapping[str, str]) -> str:
    """What the app containers' ``AWS_ENDPOINT_URL_S3`` is set to."""
    return TLS_ENDPOINT if tls_on(settings) else ENDPOINT


def app_ca_mount() -> dict[str, Any]:
    """The CA volume as the app containers mount it (the proxy alone writes it)."""
    return {"name": TLS_CA_VOLUME, "mountPath": TLS_CA_DIR, "readOnly": True}


def volumes(settings: Mapping[str, str]) -> list[dict[str, Any]]:
    """The pod volumes the proxy alone mounts. Its Vault login token is always its own: the
    API server mounts the pod's token into the containers it had before webhooks ran, not into
    ours (and not at all with automountServiceAccountToken: false)."""
    token: dict[str, Any] = {"expirationSeconds": 3600, "path": "token"}
    if settings["vault-audience"]:
        token["audience"] = settings["vault-audience"]
    # Readable by the proxy's user whatever uid the app runs as (only the proxy mounts it).
    projected = {"sources": [{"serviceAccountToken": token}], "defaultMode": 0o444}
    found: list[dict[str, Any]] = [{"name": VAULT_TOKEN_VOLUME, "projected": projected}]
    if tls_on(settings):
        memory = {"medium": "Memory", "sizeLimit": "1Mi"}
        found.append({"name": TLS_CA_VOLUME, "emptyDir": memory})
    if settings["s3-credentials-secret"]:
        found.append(
            {
                "name": S3_SECRET_VOLUME,
                "secret": {
                    "secretName": settings["s3-credentials-secret"],
                    "items": [{"key": "secret-access-key", "path": "secret-access-key"}],
                },
            }
        )
    return found


def _mounts(settings: Mapping[str, str]) -> list[dict[str, Any]]:
    found = [{"name": VAULT_TOKEN_VOLUME, "mountPath": VAULT_TOKEN_DIR, "readOnly": True}]
    if settings["s3-credentials-secret"]:
        found.append({"name": S3_SECRET_VOLUME, "mountPath": S3_SECRET_DIR, "readOnly": True})
    if tls_on(settings):
        found.append({"name": TLS_CA_VOLUME, "mountPath": TLS_CA_DIR})
    return found


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": ADMIN_PORT},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 1,
    }


def _resources(settings: Mapping[str, str]) -> dict[str, Any]:
    requests = {"cpu": settings["requests-cpu"], "memory": settings["requests-memory"]}
    limits = {"cpu": settings["limits-cpu"], "memory": settings["limits-memory"]}
    return {
        "requests": {k: v for k, v in requests.items() if v},
        "limits": {k: v for k, v in limits.items() if v},
    }


def container(
    settings: Mapping[str, str],
    *,
    service_account: str,
    extra_env: list[dict[str, Any]],
    extra_mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    """The proxy's container. ``extra_env`` / ``extra_mounts``: the pod's cloud credentials,
    taken from the app containers (s3proxy/k8s/inject.py)."""
    spec: dict[str, Any] = {
        "name": NAME,
        "image": settings["image"],
        "imagePullPolicy": settings["image-pull-policy"],
        "args": ["serve"],
        "env": _env(settings, service_account) + extra_env,
        "ports": [{"name": "s3proxy-admin", "containerPort": ADMIN_PORT, "protocol": "TCP"}],
        "startupProbe": _probe("/startup", 1, 120),
        "livenessProbe": _probe("/liveness", 10, 3),
        "readinessProbe": _probe("/readiness", 5, 2),
        "resources": _resources(settings),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if settings["config-map"]:
        spec["envFrom"] = [{"configMapRef": {"name": settings["config-map"]}}]
    mounts = _mounts(settings) + extra_mounts
    if mounts:
        spec["volumeMounts"] = mounts
    if settings["sidecar-mode"] == "native":
        spec["restartPolicy"] = "Always"
    else:
        spec["lifecycle"] = {"postStart": {"exec": {"command": ["python", "-c", WAIT_FOR_STARTUP]}}}
    return spec
