"""deploy/sidecar.yaml stays consistent with the proxy's defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from s3proxy.config import load

MANIFEST = Path(__file__).parent.parent / "deploy" / "sidecar.yaml"


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "<secret>") for e in container.get("env", [])}


def test_sidecar_manifest() -> None:
    template = yaml.safe_load(MANIFEST.read_text())["spec"]["template"]
    pod = template["spec"]
    (proxy,) = pod["initContainers"]
    (app,) = pod["containers"]
    assert proxy["restartPolicy"] == "Always"  # a native sidecar
    assert "startupProbe" in proxy
    config = load(_env(proxy))
    assert config.listen_host == "127.0.0.1"
    assert _env(app)["AWS_ENDPOINT_URL_S3"] == f"http://localhost:{config.listen_port}"
    for container in (proxy, app):
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    # Only the proxy gets the IRSA role's token (docs/threat-model.md).
    skipped = template["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"]
    assert skipped.split(",") == [app["name"]]
    assert not config.unencrypted.allow
