"""Every manifest under deploy/ is valid Kubernetes (the OpenAPI schemas, via kubernetes-validate,
strict: no unknown fields) and passes checkov's Kubernetes checks, with each exception explained
in the manifest. The kustomize overlays are rendered here (resources + JSON6902 patches, the only
kustomize features deploy/ uses) and checked as rendered."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUSTOMIZATIONS = [
    DEPLOY,
    DEPLOY / "overlays" / "static-keys",
    DEPLOY / "overlays" / "gke",
    DEPLOY / "overlays" / "tls-cert-manager",
    DEPLOY / "webhook",
]
# The oldest Kubernetes with native sidecars on by default and matchConditions GA, and the newest
# schemas the package has.
VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def render(directory: Path) -> list[dict[str, Any]]:
    """``kustomize build`` for what deploy/ uses: resources (files or directories) and patches
    given as JSON6902 operation lists with a kind/name target."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "resources", "patches"}, kustomization
    objects: list[dict[str, Any]] = []
    for entry in kustomization["resources"]:
        path = (directory / entry).resolve()
        if path.is_dir():
            objects += render(path)
        else:
            objects += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in kustomization.get("patches", []):
        operations = yaml.safe_load((directory / patch["path"]).read_text())
        target = patch["target"]
        matches = [
            i
            for i, o in enumerate(objects)
            if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]
        ]
        assert len(matches) == 1, (directory, target)
        objects[matches[0]] = jsonpatch.apply_patch(objects[matches[0]], operations)
    return objects


def test_every_manifest_file_is_in_a_kustomization() -> None:
    listed: set[Path] = set()
    for directory in KUSTOMIZATIONS:
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        listed |= {(directory / r).resolve() for r in kustomization["resources"]}
        listed |= {(directory / p["path"]).resolve() for p in kustomization.get("patches", [])}
        listed.add((directory / "kustomization.yaml").resolve())
    # deploy/monitoring holds Prometheus rules and a Grafana dashboard, not Kubernetes objects
    # (tests/test_metrics.py checks them against the proxy's /metrics)
    monitoring = DEPLOY / "monitoring"
    found = {p.resolve() for p in DEPLOY.rglob("*.yaml") if monitoring not in p.parents}
    assert found - listed == set()


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(ROOT)))
@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(directory: Path, version: str) -> None:
    objects = render(directory)
    assert objects
    for obj in objects:
        if obj["apiVersion"].startswith("cert-manager.io/"):
            _check_cert_manager(obj)  # a CRD: no schema in kubernetes-validate
            continue
        kubernetes_validate.validate(obj, version, strict=True)


def _check_cert_manager(obj: dict[str, Any]) -> None:
    """The fields cert-manager v1 requires, and what the webhook depends on."""
    assert obj["apiVersion"] == "cert-manager.io/v1"
    spec = obj["spec"]
    if obj["kind"] == "Issuer":
        assert len(set(spec) & {"selfSigned", "ca", "acme", "vault", "venafi"}) == 1
    else:
        assert obj["kind"] == "Certificate"
        assert spec["secretName"] and spec["issuerRef"]["name"]
        assert spec.get("isCA") or spec["dnsNames"]


def test_the_webhook_configuration_matches_its_service_and_certificate() -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(DEPLOY / "webhook")}
    config = objects["MutatingWebhookConfiguration", "s3proxy-injector"]
    (hook,) = config["webhooks"]
    assert hook["sideEffects"] == "None" and hook["admissionReviewVersions"] == ["v1"]
    assert hook["failurePolicy"] == "Fail" and hook["timeoutSeconds"] <= 10
    assert hook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    service = hook["clientConfig"]["service"]
    assert service["path"] == "/mutate"
    svc = objects["Service", service["name"]]
    assert svc["metadata"]["namespace"] == service["namespace"]
    assert [p["port"] for p in svc["spec"]["ports"]] == [service["port"]]
    namespace, name = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].split("/")
    certificate = objects["Certificate", name]
    assert certificate["metadata"]["namespace"] == namespace
    assert f"{service['name']}.{service['namespace']}.svc" in certificate["spec"]["dnsNames"]
    deployment = objects["Deployment", "s3proxy-webhook"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["S3PROXY_WEBHOOK_LISTEN"].endswith(":8443")
    secrets = {v["name"]: v.get("secret", {}).get("secretName") for v in pod["volumes"]}
    assert certificate["spec"]["secretName"] in secrets.values()
    config_json = json.loads(objects["ConfigMap", "s3proxy-webhook"]["data"]["config.json"])
    from s3proxy.k8s.settings import check

    check(config_json, "config.json")  # only names and values the webhook accepts
    excluded = hook["namespaceSelector"]["matchExpressions"][1]
    assert {"kube-system", "kube-public"} <= set(excluded["values"])


@pytest.mark.parametrize(
    ("annotations", "called"),
    [
        ({"s3proxy.io/inject": "true"}, True),
        ({"s3proxy.io/inject": "false"}, False),
        ({"s3proxy.io/inject": "True"}, False),
        ({"other.io/inject": "true"}, False),
        (None, False),
    ],
)
def test_the_api_server_asks_only_about_annotated_pods(
    annotations: dict[str, str] | None, called: bool
) -> None:
    """The matchConditions expression, evaluated by a CEL implementation on pods as the API
    server passes them (``object``): a webhook outage (failurePolicy Fail) can only delay pods
    that asked for the proxy."""
    import celpy

    config = next(
        o for o in render(DEPLOY / "webhook") if o["kind"] == "MutatingWebhookConfiguration"
    )
    (condition,) = config["webhooks"][0]["matchConditions"]
    environment = celpy.Environment()
    program = environment.program(environment.compile(condition["expression"]))
    metadata: dict[str, Any] = {"name": "p"}
    if annotations is not None:
        metadata["annotations"] = annotations
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {"containers": []}}
    assert bool(program.evaluate({"object": celpy.json_to_cel(pod)})) is called


def _checkov() -> str | None:
    if CHECKOV.exists():
        return str(CHECKOV)
    return shutil.which("checkov")


def test_manifests_pass_checkov(tmp_path: Path) -> None:
    checkov = _checkov()
    if checkov is None:
        if os.environ.get("CI"):
            pytest.fail("checkov is missing: `make checkov` installs it")
        pytest.skip("checkov is not installed (`make checkov`)")
    for directory in KUSTOMIZATIONS:
        name = str(directory.relative_to(ROOT)).replace("/", "-")
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(render(directory)))
    command = [checkov, "--compact", "--skip-download", "--framework", "kubernetes"]
    result = subprocess.run(
        [*command, "-o", "json", "-d", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        (c["check_id"], c["resource"], c["check_name"])
        for r in reports
        for c in r["results"]["failed_checks"]
    ]
    passed = sum(r["summary"]["passed"] for r in reports)
    skipped = {c["check_id"] for r in reports for c in r["results"]["skipped_checks"]}
    assert failed == [], failed
    assert passed > 100
    # Every exception is one of those the manifests explain (checkov.io/skipN annotations).
    assert skipped <= {"CKV_K8S_43", "CKV_K8S_8", "CKV_K8S_9"}, skipped
