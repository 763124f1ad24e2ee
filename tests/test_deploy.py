"""deploy/sidecar.yaml stays consistent with the proxy's settings and with what the injecting
webhook writes into pods (s3proxy/k8s/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from s3proxy.config import load
from s3proxy.k8s import sidecar
from s3proxy.k8s.settings import SIDECAR_SETTINGS

DEPLOY = Path(__file__).parent.parent / "deploy"
MANIFEST = DEPLOY / "sidecar.yaml"


def _objects() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text()) if d}


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "<secret>") for e in container.get("env", [])}


def _proxy_env() -> dict[str, str]:
    """The proxy container's environment: its ConfigMap, then its own env (which wins)."""
    objects = _objects()
    (proxy,) = objects["Deployment"]["spec"]["template"]["spec"]["initContainers"]
    (source,) = proxy["envFrom"]
    assert source["configMapRef"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    return {**objects["ConfigMap"]["data"], **_env(proxy)}


def test_sidecar_manifest() -> None:
    objects = _objects()
    template = objects["Deployment"]["spec"]["template"]
    pod = template["spec"]
    (proxy,) = pod["initContainers"]
    (app,) = pod["containers"]
    assert proxy["restartPolicy"] == "Always"  # a native sidecar
    config = load(_proxy_env())
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", sidecar.S3_PORT)
    assert config.vault_auth.method == "kubernetes"
    # The IP, never "localhost" (docs/kubernetes.md).
    assert _env(app)["AWS_ENDPOINT_URL_S3"] == f"http://127.0.0.1:{config.listen_port}"
    for container in (proxy, app):
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"]["drop"] == ["ALL"]
        assert ctx["readOnlyRootFilesystem"] is True and ctx["runAsNonRoot"] is True
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == sidecar.UID
    # Only the proxy gets the IRSA role's token and the Vault token (docs/threat-model.md).
    skipped = template["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"]
    assert skipped.split(",") == [app["name"]]
    assert pod["automountServiceAccountToken"] is False
    (vault_mount,) = proxy["volumeMounts"]
    assert _proxy_env()["S3PROXY_VAULT_JWT_FILE"].startswith(vault_mount["mountPath"] + "/")
    assert "volumeMounts" not in app or all(
        m["name"] != vault_mount["name"] for m in app["volumeMounts"]
    )
    assert "eks.amazonaws.com/role-arn" in objects["ServiceAccount"]["metadata"]["annotations"]
    assert not config.unencrypted.allow


def test_sidecar_manifest_matches_what_the_webhook_injects() -> None:
    """Probes on the admin port, security context and resources: one design, two deliveries."""
    (proxy,) = _objects()["Deployment"]["spec"]["template"]["spec"]["initContainers"]
    defaults = {s.name: s.default for s in SIDECAR_SETTINGS} | {"vault-addr": "https://v:8200"}
    injected = sidecar.container(defaults, service_account="sa", extra_env=[], extra_mounts=[])
    for probe, path in (
        ("startupProbe", "/startup"),
        ("livenessProbe", "/liveness"),
        ("readinessProbe", "/readiness"),
    ):
        assert proxy[probe]["httpGet"] == {"path": path, "port": sidecar.ADMIN_PORT}
        assert injected[probe]["httpGet"] == proxy[probe]["httpGet"]
    assert injected["securityContext"] == proxy["securityContext"]
    assert injected["resources"] == proxy["resources"]
    assert injected["ports"] == proxy["ports"]
    assert injected["args"] == proxy["args"] == ["serve"]
    for name in ("S3PROXY_LISTEN", "S3PROXY_ADMIN_LISTEN"):
        assert _env(injected)[name] == _env(proxy)[name]
