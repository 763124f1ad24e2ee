"""deploy/sidecar.yaml stays consistent with the proxy's settings and with what the injecting
webhook writes into pods (s3proxy/k8s/)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from s3proxy import __version__
from s3proxy.config import load
from s3proxy.devstack import clean_env
from s3proxy.k8s import sidecar
from s3proxy.k8s.settings import SIDECAR_SETTINGS

DEPLOY = Path(__file__).parent.parent / "deploy"
MANIFEST = DEPLOY / "sidecar.yaml"
CI = bool(os.environ.get("CI"))


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
    assert config.vault.auth.method == "kubernetes"
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


# ---- The container image ---------------------------------------------------------------------

ROOT = DEPLOY.parent
DOCKERFILE = ROOT / "Dockerfile"


def _stages() -> list[list[dict[str, Any]]]:
    from dockerfile_parse import DockerfileParser

    parsed = DockerfileParser(path=str(DOCKERFILE))
    stages: list[list[dict[str, Any]]] = []
    for item in parsed.structure:
        if item["instruction"] == "FROM":
            stages.append([])
        if stages and item["instruction"] != "COMMENT":
            stages[-1].append(item)
    return stages


def _values(stage: list[dict[str, Any]], instruction: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == instruction]


def test_the_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    builder, final = _stages()
    assert _values(builder, "FROM")[0].endswith(" AS builder")
    base = _values(final, "FROM")[0]
    assert base == _values(builder, "FROM")[0].removesuffix(" AS builder") == "${PYTHON_IMAGE}"
    from dockerfile_parse import DockerfileParser

    parsed = DockerfileParser(path=str(DOCKERFILE))
    args = [i["value"] for i in parsed.structure if i["instruction"] == "ARG"]
    assert args == ["PYTHON_IMAGE=python:3.11-slim-bookworm"]
    # The final stage copies the virtualenv from the builder and installs nothing itself.
    assert _values(final, "RUN") == []
    assert _values(final, "COPY") == ["--from=builder /opt/venv /opt/venv"]
    (user,) = _values(final, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) == sidecar.UID and gid.isdigit() and int(uid) != 0
    assert _values(final, "ENTRYPOINT") == ['["s3proxy"]']
    assert _values(final, "CMD") == ['["serve"]']
    (exposed,) = _values(final, "EXPOSE")
    assert exposed.split() == [str(sidecar.S3_PORT), str(sidecar.ADMIN_PORT)]
    for line in _values(builder, "RUN"):
        assert "apt-get" not in line and "gcc" not in line


def test_the_dockerfile_install_and_entry_commands_work_in_a_clean_virtualenv(
    tmp_path: Path,
) -> None:
    """The builder stage's exact RUN lines, in a directory laid out as its COPY lines say (only
    /opt/venv and /wheels moved under tmp_path), then the final stage's entrypoint."""
    builder, final = _stages()
    src = tmp_path / "src"
    src.mkdir()
    for copy in _values(builder, "COPY"):
        *sources, dest = copy.split()
        for source in sources:
            target = src / dest / Path(source).name if dest.endswith("/") else src / dest
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(ROOT / source, target)
    moved = {"/opt/venv": str(tmp_path / "venv"), "/wheels": str(tmp_path / "wheels")}
    env = clean_env({"PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    for line in _values(builder, "RUN"):
        for old, new in moved.items():
            line = line.replace(old, new)
        result = subprocess.run(
            ["sh", "-c", line], cwd=src, env=env, capture_output=True, text=True, timeout=480
        )
        if result.returncode and "Could not find a version" in result.stderr and not CI:
            pytest.skip(f"no package index reachable: {result.stderr[-300:]}")
        assert result.returncode == 0, (line, result.stderr[-2000:])
    venv_bin = tmp_path / "venv" / "bin"
    assert not (venv_bin / "pip").exists()  # no pip left in what the final stage copies
    (entrypoint,) = _values(final, "ENTRYPOINT")
    (command,) = _values(final, "CMD")
    argv = [str(venv_bin / json.loads(entrypoint)[0]), *json.loads(command)]
    run_env = clean_env({"PATH": f"{venv_bin}:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    version = subprocess.run(
        [argv[0], "--version"], env=run_env, capture_output=True, text=True, timeout=60
    )
    assert version.stdout.strip() == f"s3proxy {__version__}"
    # `serve` with no Vault settings: the configuration error names the variable (exit 2).
    served = subprocess.run(argv, env=run_env, capture_output=True, text=True, timeout=60)
    assert served.returncode == 2
    assert served.stderr == "s3proxy: configuration error: VAULT_ADDR is required\n"
    hook = subprocess.run(
        [argv[0], "webhook", "--help"], env=run_env, capture_output=True, text=True, timeout=60
    )
    assert hook.returncode == 0 and "S3PROXY_WEBHOOK_TLS_CERT" in hook.stdout
