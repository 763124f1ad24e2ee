"""``s3proxy webhook`` as the API server sees it: AdmissionReview v1 JSON posted over TLS (a
certificate made here) to a real webhook process; the returned JSON patch applied with
``jsonpatch`` and the result validated against the Kubernetes schema. The injected pod of
docs/kubernetes.md is compared as written there, and a second review of every injected pod
changes nothing."""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from copy import deepcopy
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from s3proxy.devstack import (
    Process,
    S3Server,
    _spawn,
    boto3_client,
    clean_env,
    free_port,
    start_vault,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "kubernetes.md"
SCHEMA_VERSION = "1.30.0"
# The webhook runs with the defaults deploy/webhook/config.yaml gives it.
WEBHOOK_CONFIG = ROOT / "deploy" / "webhook" / "config.yaml"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "s3proxy-webhook-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Webhook:
    def __init__(self, process: Process, url: str, cafile: Path) -> None:
        self.process = process
        self.url = url
        self.context = ssl.create_default_context(cafile=str(cafile))

    def post(self, body: bytes) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"{self.url}/mutate", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.context) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def review(self, pod: dict[str, Any], namespace: str = "backup") -> dict[str, Any]:
        """The AdmissionReview response for creating ``pod``, checked as the API server would."""
        uid = str(uuid.uuid4())
        status, answer = self.post(json.dumps(admission_review(pod, namespace, uid)).encode())
        assert status == 200
        assert answer["apiVersion"] == "admission.k8s.io/v1"
        assert answer["kind"] == "AdmissionReview"
        response: dict[str, Any] = answer["response"]
        assert response["uid"] == uid and response["allowed"] is True
        return response


def admission_review(pod: dict[str, Any], namespace: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    directory = tmp_path_factory.mktemp("webhook")
    cert, key = make_certificate(directory)
    config = directory / "config.json"
    (config_map, _) = yaml.safe_load_all(WEBHOOK_CONFIG.read_text())
    config.write_text(config_map["data"]["config.json"])
    port = free_port()
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    process = _spawn(
        [sys.executable, "-m", "s3proxy", "webhook", "--listen", f"127.0.0.1:{port}", *tls],
        clean_env({"S3PROXY_WEBHOOK_CONFIG": str(config)}),
        directory / "webhook.log",
    )
    hook = Webhook(process, f"https://127.0.0.1:{port}", cert)

    def healthy() -> bool:
        if process.proc.poll() is not None:
            raise RuntimeError(process.log_text())
        with urllib.request.urlopen(f"{hook.url}/healthz", timeout=1, context=hook.context) as r:
            return bool(r.status == 200)

    try:
        wait_for(healthy, "webhook")
        yield hook
    finally:
        process.stop()


def pod(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """A pod as a ReplicaSet creates it (no name yet, a generateName)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "backup-7d9f8-",
            "labels": {"app": "backup"},
            "annotations": {"s3proxy.io/inject": "true", **(annotations or {})},
        },
        "spec": {
            "serviceAccountName": "backup",
            "containers": [{"name": "app", "image": "amazon/aws-cli:2.17.0"}],
            **spec,
        },
    }


def apply(original: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    assert response["patchType"] == "JSONPatch"
    operations = json.loads(base64.b64decode(response["patch"]))
    patched: dict[str, Any] = jsonpatch.apply_patch(original, operations)
    kubernetes_validate.validate(patched, SCHEMA_VERSION, strict=True)
    return patched


def inject(webhook: Webhook, original: dict[str, Any]) -> dict[str, Any]:
    """The pod after injection; a second review of it changes nothing."""
    kubernetes_validate.validate(original, SCHEMA_VERSION, strict=True)
    first = webhook.review(deepcopy(original))
    assert "warnings" not in first, first
    patched = apply(original, first)
    again = webhook.review(deepcopy(patched))
    assert "patch" not in again and "warnings" not in again
    return patched


def documented(marker: str) -> Any:
    """The YAML block that follows ``<!-- marker -->`` in docs/kubernetes.md."""
    text = DOCS.read_text()
    found = re.search(rf"<!-- {marker} -->\s*```yaml\n(.*?)```", text, re.S)
    assert found, marker
    return yaml.safe_load(found.group(1))


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in items}


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_a_plain_pod_is_injected_exactly_as_documented(webhook: Webhook) -> None:
    original = documented("plain-pod")
    patched = inject(webhook, original)
    assert patched == documented("plain-pod-injected")
    assert patched["spec"]["initContainers"][0]["restartPolicy"] == "Always"
    assert env(patched["spec"]["containers"][0])["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:8190"


def test_defaults_flags_over_environment_over_config_file(tmp_path: Path) -> None:
    from s3proxy.k8s.settings import SettingsError, load_defaults

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"image": "from-file:1", "transit-key": "file-key"}))
    values = load_defaults(
        {"S3PROXY_WEBHOOK_IMAGE": "from-env:1", "S3PROXY_WEBHOOK_S3_REGION": "eu-west-1"},
        {"S3PROXY_WEBHOOK_S3_REGION": "eu-central-1"},
        str(config),
    )
    assert values["image"] == "from-env:1" and values["transit-key"] == "file-key"
    assert values["s3-region"] == "eu-central-1" and values["sidecar-mode"] == "native"
    config.write_text(json.dumps({"sidecar-mode": "sideways"}))
    with pytest.raises(SettingsError, match="sidecar-mode has an invalid value"):
        load_defaults({}, {}, str(config))


def test_the_patch_escapes_annotation_keys(webhook: Webhook) -> None:
    response = webhook.review(pod())
    paths = [op["path"] for op in json.loads(base64.b64decode(response["patch"]))]
    assert "/metadata/annotations/s3proxy.io~1inject-status" in paths
    assert "/metadata/annotations/eks.amazonaws.com~1skip-containers" in paths


def test_an_injected_pod_or_one_not_asking_is_left_alone(webhook: Webhook) -> None:
    for marks in (
        {"s3proxy.io/inject-status": "injected"},
        {"s3proxy.io/inject": "false"},
    ):
        response = webhook.review(pod(marks))
        assert "patch" not in response and "warnings" not in response
    unannotated = pod()
    del unannotated["metadata"]["annotations"]
    response = webhook.review(unannotated)
    assert "patch" not in response and "warnings" not in response


def test_custom_annotations_win_over_the_defaults(webhook: Webhook) -> None:
    patched = inject(
        webhook,
        pod(
            {
                "s3proxy.io/image": "registry.example.eu/s3proxy:0.2.0",
                "s3proxy.io/vault-addr": "https://vault.other.eu:8200",
                "s3proxy.io/vault-role": "backup-writer",
                "s3proxy.io/vault-audience": "vault",
                "s3proxy.io/transit-key": "team-a",
                "s3proxy.io/s3-endpoint": "https://minio.storage.svc:9000",
                "s3proxy.io/s3-region": "us-east-1",
                "s3proxy.io/s3-credentials-secret": "minio-keys",
                "s3proxy.io/config-map": "backup-s3proxy",
                "s3proxy.io/requests-cpu": "500m",
                "s3proxy.io/limits-memory": "512Mi",
                "s3proxy.io/log-level": "DEBUG",
            },
            volumes=[{"name": "data", "emptyDir": {}}],
        ),
    )
    spec = patched["spec"]
    (proxy,) = spec["initContainers"]
    assert proxy["image"] == "registry.example.eu/s3proxy:0.2.0"
    assert proxy["resources"] == {
        "requests": {"cpu": "500m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }
    assert proxy["envFrom"] == [{"configMapRef": {"name": "backup-s3proxy"}}]
    assert env(proxy) == {
        "S3PROXY_LISTEN": "127.0.0.1:8190",
        "S3PROXY_ADMIN_LISTEN": "0.0.0.0:8191",
        "VAULT_ADDR": "https://vault.other.eu:8200",
        "S3PROXY_VAULT_AUTH": "kubernetes",
        "S3PROXY_VAULT_ROLE": "backup-writer",
        "S3PROXY_VAULT_TRANSIT_KEY": "team-a",
        "S3PROXY_S3_ENDPOINT": "https://minio.storage.svc:9000",
        "S3PROXY_S3_REGION": "us-east-1",
        "S3PROXY_LOG_LEVEL": "DEBUG",
        "S3PROXY_VAULT_JWT_FILE": "/var/run/secrets/s3proxy.io/vault/token",
        "S3PROXY_S3_ACCESS_KEY_ID": {
            "secretKeyRef": {"name": "minio-keys", "key": "access-key-id"}
        },
        "S3PROXY_S3_SECRET_ACCESS_KEY_FILE": "/var/run/secrets/s3proxy.io/s3/secret-access-key",
    }
    volumes = by_name(spec["volumes"])
    assert set(volumes) == {"data", "s3proxy-vault-token", "s3proxy-s3-credentials"}
    assert volumes["s3proxy-s3-credentials"]["secret"]["secretName"] == "minio-keys"
    token = volumes["s3proxy-vault-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "vault"
    assert proxy["volumeMounts"] == [
        {
            "name": "s3proxy-vault-token",
            "mountPath": "/var/run/secrets/s3proxy.io/vault",
            "readOnly": True,
        },
        {
            "name": "s3proxy-s3-credentials",
            "mountPath": "/var/run/secrets/s3proxy.io/s3",
            "readOnly": True,
        },
    ]
    # The proxy's secrets reach the proxy only.
    (app,) = spec["containers"]
    assert "volumeMounts" not in app and env(app) == {
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:8190"
    }


def test_init_containers_and_apps_get_the_endpoint_unless_they_set_it(webhook: Webhook) -> None:
    original = pod(
        initContainers=[{"name": "fetch-config", "image": "busybox:1.36"}],
        containers=[
            {"name": "app", "image": "app:1", "env": [{"name": "MODE", "value": "backup"}]},
            {
                "name": "uploader",
                "image": "uploader:1",
                "env": [{"name": "AWS_ENDPOINT_URL_S3", "value": "https://s3.elsewhere.eu"}],
            },
        ],
    )
    patched = inject(webhook, original)
    spec = patched["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["s3proxy", "fetch-config"]
    assert env(spec["initContainers"][1]) == {"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:8190"}
    app, uploader = spec["containers"]
    assert env(app) == {"MODE": "backup", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:8190"}
    assert env(uploader) == {"AWS_ENDPOINT_URL_S3": "https://s3.elsewhere.eu"}
    skipped = patched["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"]
    assert skipped == "fetch-config,app,uploader"


def test_credentials_eks_gave_the_app_are_moved_to_the_proxy(webhook: Webhook) -> None:
    """When EKS's pod identity webhook ran first, its IRSA variables and token mount go to the
    proxy and leave the app (docs/threat-model.md)."""
    irsa_env = [
        {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
        {"name": "AWS_DEFAULT_REGION", "value": "eu-central-1"},
        {"name": "AWS_REGION", "value": "eu-central-1"},
        {"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::111122223333:role/backup"},
        {
            "name": "AWS_WEB_IDENTITY_TOKEN_FILE",
            "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
        },
    ]
    mount = {
        "name": "aws-iam-token",
        "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount",
        "readOnly": True,
    }
    token = {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}
    original = pod(
        containers=[{"name": "app", "image": "app:1", "env": irsa_env, "volumeMounts": [mount]}],
        volumes=[
            {"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": token}]}}
        ],
    )
    patched = inject(webhook, original)
    (proxy,) = patched["spec"]["initContainers"]
    (app,) = patched["spec"]["containers"]
    assert env(app) == {
        "AWS_STS_REGIONAL_ENDPOINTS": "regional",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_REGION": "eu-central-1",
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:8190",
    }
    assert app["volumeMounts"] == []
    assert {e["name"]: e["value"] for e in irsa_env}.items() <= env(proxy).items()
    assert proxy["volumeMounts"][-1] == mount


def test_plain_container_mode_for_clusters_before_1_29(webhook: Webhook) -> None:
    original = pod(
        {"s3proxy.io/sidecar-mode": "container"},
        initContainers=[{"name": "migrate", "image": "migrate:1"}],
    )
    patched = inject(webhook, original)
    spec = patched["spec"]
    assert [c["name"] for c in spec["containers"]] == ["s3proxy", "app"]
    proxy = spec["containers"][0]
    assert "restartPolicy" not in proxy
    assert proxy["lifecycle"]["postStart"]["exec"]["command"][:2] == ["python", "-c"]
    # Init containers run before a plain-container proxy exists: left as they are.
    assert spec["initContainers"] == [{"name": "migrate", "image": "migrate:1"}]
    annotations = patched["metadata"]["annotations"]
    assert annotations["kubectl.kubernetes.io/default-container"] == "app"


IRSA_ENV = [
    {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
    {"name": "AWS_DEFAULT_REGION", "value": "eu-central-1"},
    {"name": "AWS_REGION", "value": "eu-central-1"},
    {"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::111122223333:role/backup"},
    {
        "name": "AWS_WEB_IDENTITY_TOKEN_FILE",
        "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
    },
]
IRSA_MOUNT = {
    "name": "aws-iam-token",
    "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount",
    "readOnly": True,
}
POD_IDENTITY_ENV = [
    {"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "http://169.254.170.23/v1/credentials"},
    {
        "name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "value": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token",
    },
]
POD_IDENTITY_MOUNT = {
    "name": "eks-pod-identity-token",
    "mountPath": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount",
    "readOnly": True,
}


def eks_injected(original: dict[str, Any]) -> dict[str, Any]:
    """The pod as EKS's pod identity webhook leaves it when the service account has both an
    IRSA role and a Pod Identity association: every container, init containers included, gets
    the variables and token mounts, and the pod the projected token volumes."""
    changed = deepcopy(original)
    spec = changed["spec"]
    for item in spec.get("initContainers", []) + spec["containers"]:
        item["env"] = item.get("env", []) + IRSA_ENV + POD_IDENTITY_ENV
        item["volumeMounts"] = [*item.get("volumeMounts", []), IRSA_MOUNT, POD_IDENTITY_MOUNT]
    irsa = {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}
    pod_identity = {
        "audience": "pods.eks.amazonaws.com",
        "expirationSeconds": 86400,
        "path": "eks-pod-identity-token",
    }
    spec["volumes"] = [
        *spec.get("volumes", []),
        {"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": irsa}]}},
        {
            "name": "eks-pod-identity-token",
            "projected": {"sources": [{"serviceAccountToken": pod_identity}]},
        },
    ]
    return changed


@pytest.mark.parametrize("mode", ["native", "container"])
def test_no_container_but_the_proxy_keeps_the_pods_aws_credentials(
    webhook: Webhook, mode: str
) -> None:
    """Init containers too, in both modes: one that kept the proxy's role could write plaintext
    straight to the store (issue 18)."""
    original = eks_injected(
        pod(
            {"s3proxy.io/sidecar-mode": mode},
            initContainers=[
                {"name": "migrate", "image": "migrate:1"},
                {"name": "seed", "image": "seed:1", "env": [{"name": "MODE", "value": "x"}]},
            ],
            containers=[
                {"name": "app", "image": "app:1"},
                {"name": "uploader", "image": "uploader:1"},
            ],
        )
    )
    patched = inject(webhook, original)
    spec = patched["spec"]
    every = spec["initContainers"] + spec["containers"]
    proxies = [c for c in every if c["name"] == "s3proxy"]
    others = [c for c in every if c["name"] != "s3proxy"]
    assert len(proxies) == 1 and len(others) == 4
    credential_vars = {e["name"] for e in IRSA_ENV + POD_IDENTITY_ENV} - {
        "AWS_STS_REGIONAL_ENDPOINTS",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
    }
    token_volumes = {"aws-iam-token", "eks-pod-identity-token"}
    for item in others:
        assert not credential_vars & set(env(item)), item["name"]
        mounts = item.get("volumeMounts", [])
        assert not token_volumes & {m["name"] for m in mounts}, item["name"]
        assert not any("eks.amazonaws.com" in m["mountPath"] for m in mounts), item["name"]
    (proxy,) = proxies
    assert credential_vars <= set(env(proxy))
    assert token_volumes <= {m["name"] for m in proxy["volumeMounts"]}
    app_env = env(by_name(spec["containers"])["app"])
    assert app_env["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:8190"
    seed = env(by_name(spec["initContainers"])["seed"])
    if mode == "native":
        assert seed["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:8190"
    else:  # no proxy runs yet for init containers: no endpoint, and no credentials either
        assert "AWS_ENDPOINT_URL_S3" not in seed and seed["MODE"] == "x"


def test_a_transit_key_per_namespace_or_service_account(webhook: Webhook) -> None:
    def key_of(annotations: dict[str, str], namespace: str, account: str) -> str:
        original = pod(annotations, serviceAccountName=account)
        response = webhook.review(deepcopy(original), namespace=namespace)
        assert "warnings" not in response, response
        patched = apply(original, response)
        proxy = by_name(patched["spec"]["initContainers"])["s3proxy"]
        return str(env(proxy)["S3PROXY_VAULT_TRANSIT_KEY"])

    per_namespace = {"s3proxy.io/transit-key": "s3proxy-{namespace}"}
    assert key_of(per_namespace, "team-a", "backup") == "s3proxy-team-a"
    assert key_of(per_namespace, "team-b", "backup") == "s3proxy-team-b"
    per_account = {"s3proxy.io/transit-key": "tenant-{namespace}-{serviceaccount}"}
    assert key_of(per_account, "team-a", "db-backup") == "tenant-team-a-db-backup"
    assert key_of({}, "team-a", "backup") == "s3proxy"  # the webhook's default: one key for all
    for bad in ("s3proxy-{pod}", "s3proxy-{namespace", "{namespace}}"):
        response = webhook.review(pod({"s3proxy.io/transit-key": bad}))
        assert "patch" not in response
        assert "transit-key has an invalid value" in response["warnings"][0]


def test_the_container_mode_wait_hook_waits_for_startup(tmp_path: Path) -> None:
    """The postStart script returns once GET /startup on the admin port answers."""
    from s3proxy.k8s.sidecar import ADMIN_PORT, WAIT_FOR_STARTUP

    port = free_port()
    script = WAIT_FOR_STARTUP.replace(f":{ADMIN_PORT}/", f":{port}/")
    waiter = subprocess.Popen([sys.executable, "-c", script])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.wait(1.5)
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(port)],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        (tmp_path / "startup").write_text("ok")
        try:
            assert waiter.wait(10) == 0
        finally:
            server.terminate()
            server.wait(5)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public"])
def test_system_namespaces_are_skipped_with_a_warning(webhook: Webhook, namespace: str) -> None:
    response = webhook.review(pod(), namespace=namespace)
    assert "patch" not in response
    assert response["warnings"] == [f"s3proxy not injected: pods in {namespace} are never injected"]


@pytest.mark.parametrize(
    ("change", "warning"),
    [
        (
            lambda p: p["spec"].update(containers="app"),
            "spec.containers is not a list",
        ),
        (
            lambda p: p["metadata"]["annotations"].update({"s3proxy.io/inject": "yes"}),
            's3proxy.io/inject must be "true" or "false"',
        ),
        (
            lambda p: p["metadata"]["annotations"].update({"s3proxy.io/limits-memory": "lots"}),
            "annotation s3proxy.io/limits-memory: limits-memory has an invalid value",
        ),
        (
            lambda p: p["metadata"]["annotations"].update({"s3proxy.io/vault-adr": "x"}),
            "annotation s3proxy.io/vault-adr: unknown setting",
        ),
        (
            lambda p: p["spec"]["containers"].append({"name": "s3proxy", "image": "x"}),
            "a container is already named s3proxy",
        ),
        (
            lambda p: p["spec"]["containers"][0].update(ports=[{"containerPort": 8190}]),
            "a container uses port 8190 or 8191",
        ),
        (lambda p: p.pop("spec"), "spec is not an object"),
    ],
)
def test_what_is_not_understood_is_allowed_unchanged_with_a_warning(
    webhook: Webhook, change: Any, warning: str
) -> None:
    original = pod()
    change(original)
    response = webhook.review(original)
    assert "patch" not in response and "patchType" not in response
    (text,) = response["warnings"]
    assert text.startswith(f"s3proxy not injected: {warning}"), text
    assert len(text) <= 120


def test_malformed_reviews(webhook: Webhook) -> None:
    status, answer = webhook.post(b"{not json")
    assert status == 400 and "error" in answer
    status, answer = webhook.post(
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}'
    )
    assert status == 200
    assert answer["response"] == {
        "uid": "",
        "allowed": True,
        "warnings": ["s3proxy not injected: no AdmissionReview request"],
    }
    review = admission_review(pod(), "backup", "u-1")
    review["request"]["kind"] = {"group": "apps", "version": "v1", "kind": "Deployment"}
    status, answer = webhook.post(json.dumps(review).encode())
    assert answer["response"]["uid"] == "u-1" and "patch" not in answer["response"]
    assert answer["response"]["warnings"][0].startswith("s3proxy not injected: not a Pod")


def test_updates_are_never_patched(webhook: Webhook) -> None:
    review = admission_review(pod(), "backup", "u-2")
    review["request"]["operation"] = "UPDATE"
    status, answer = webhook.post(json.dumps(review).encode())
    assert status == 200 and answer["response"] == {"uid": "u-2", "allowed": True}


def test_the_command_needs_a_certificate_and_valid_defaults(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "s3proxy", "webhook"]
    missing = subprocess.run(command, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "S3PROXY_WEBHOOK_TLS_CERT" in missing.stderr
    cert, key = make_certificate(tmp_path)
    bad = subprocess.run(
        [*command, "--tls-cert", str(cert), "--tls-key", str(key), "--sidecar-mode", "sideways"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "S3PROXY_WEBHOOK_SIDECAR_MODE: sidecar-mode has an invalid value" in bad.stderr


def test_plain_http_is_refused(webhook: Webhook) -> None:
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(webhook.url.replace("https", "http") + "/healthz", timeout=5)


# ---- The injected sidecar, run as the pod spec says, against the dev stack -------------------

TRANSIT_POLICY = """
path "transit/datakey/plaintext/s3proxy" { capabilities = ["update"] }
path "transit/decrypt/s3proxy" { capabilities = ["update"] }
path "transit/hmac/s3proxy" { capabilities = ["update"] }
path "transit/keys/s3proxy" { capabilities = ["read"] }
"""
# What a cluster would give the pod, here: the Secret the pod names, and service-account tokens
# (signed by a key Vault's JWT auth trusts, as it would trust the cluster's issuer).
SERVICE_ACCOUNT = "system:serviceaccount:backup:backup"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(key: rsa.RSAPrivateKey, audience: str) -> str:
    now = int(time.time())
    claims = {"iss": "https://kubernetes.default.svc", "sub": SERVICE_ACCOUNT, "aud": audience}
    claims |= {"iat": now, "nbf": now - 5, "exp": now + 3600}
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{_b64url(signature)}"


class PodRuntime:
    """Runs a container of a pod spec on this machine, the way the kubelet would: the image's
    entrypoint (``s3proxy``) with the container's args, its env (secretKeyRefs resolved), its
    mounts as directories. What must differ here is replaced, and only that: mount paths
    (directories under ``root``) and the loopback ports (free ones, so tests run in parallel)."""

    def __init__(
        self, spec: dict[str, Any], root: Path, secrets: dict[str, dict[str, str]]
    ) -> None:
        self.spec = spec
        self.root = root
        self.secrets = secrets
        self.ports: dict[str, str] = {}  # "127.0.0.1:8190" -> "127.0.0.1:<free>"

    def port(self, address: str) -> str:
        if address not in self.ports:
            self.ports[address] = f"127.0.0.1:{free_port()}"
        return self.ports[address]

    def mounts(self, container: dict[str, Any], key: rsa.RSAPrivateKey) -> dict[str, Path]:
        volumes = by_name(self.spec.get("volumes", []))
        local: dict[str, Path] = {}
        for mount in container.get("volumeMounts", []):
            directory = self.root / mount["mountPath"].lstrip("/")
            volume = volumes[mount["name"]]
            # An emptyDir is one directory for every container that mounts it.
            directory.mkdir(parents=True, exist_ok="emptyDir" in volume)
            if "emptyDir" in volume:
                pass
            elif "secret" in volume:
                data = self.secrets[volume["secret"]["secretName"]]
                items = volume["secret"].get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    (directory / item["path"]).write_text(data[item["key"]])
            else:
                for source in volume["projected"]["sources"]:
                    token = source["serviceAccountToken"]
                    audience = token.get("audience", "https://kubernetes.default.svc")
                    (directory / token["path"]).write_text(_jwt(key, audience))
            local[mount["mountPath"]] = directory
        return local

    def env(self, container: dict[str, Any], local: dict[str, Path]) -> dict[str, str]:
        env: dict[str, str] = {}
        for entry in container.get("env", []):
            if "value" in entry:
                value = entry["value"]
            else:
                ref = entry["valueFrom"]["secretKeyRef"]
                value = self.secrets[ref["name"]][ref["key"]]
            for path, directory in local.items():
                if value.startswith(path + "/"):
                    value = str(directory) + value[len(path) :]
            for address in ("127.0.0.1:8190", "0.0.0.0:8191", "127.0.0.1:8443"):
                value = value.replace(address, self.port(address))
            env[entry["name"]] = value
        return env


@pytest.fixture
def jwt_vault(workdir: Path) -> Iterator[tuple[Any, rsa.RSAPrivateKey]]:
    vault = start_vault(workdir)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        for method, path, body in (
            ("PUT", "sys/policies/acl/backup", {"policy": TRANSIT_POLICY}),
            ("POST", "sys/auth/jwt", {"type": "jwt"}),
            ("POST", "auth/jwt/config", {"jwt_validation_pubkeys": [public.decode()]}),
            (
                "POST",
                "auth/jwt/role/backup-writer",
                {
                    "role_type": "jwt",
                    "bound_audiences": ["vault"],
                    "bound_subject": SERVICE_ACCOUNT,
                    "user_claim": "sub",
                    "token_policies": ["backup"],
                    "token_ttl": "1h",
                },
            ),
        ):
            status, reply = vault.api(method, path, body)
            assert status in (200, 204), (path, status, reply)
        yield vault, key
    finally:
        vault.stop()


def test_the_injected_sidecar_serves_a_workload_that_only_has_the_endpoint(
    webhook: Webhook,
    jwt_vault: tuple[Any, rsa.RSAPrivateKey],
    s3: S3Server,
    bucket: str,
    tmp_path: Path,
) -> None:
    """The webhook's output, run: the proxy from the patched pod's own command and env (real
    OpenBao with JWT auth, moto with signature checks, static keys from the pod's Secret), and
    the app container's env alone leading the AWS CLI through it."""
    vault, key = jwt_vault
    original = pod(
        {
            "s3proxy.io/vault-addr": vault.addr,
            "s3proxy.io/vault-auth": "jwt",
            "s3proxy.io/vault-role": "backup-writer",
            "s3proxy.io/vault-audience": "vault",
            "s3proxy.io/s3-endpoint": s3.endpoint,
            "s3proxy.io/s3-region": s3.region,
            "s3proxy.io/s3-credentials-secret": "moto-keys",
        },
        containers=[
            {
                "name": "app",
                "image": "amazon/aws-cli:2.17.0",
                "env": [
                    {"name": "AWS_ACCESS_KEY_ID", "value": "any"},
                    {"name": "AWS_SECRET_ACCESS_KEY", "value": "any"},
                    {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"},
                ],
            }
        ],
    )
    spec = inject(webhook, original)["spec"]
    with run_pod(spec, key, s3, tmp_path) as (runtime, app_env):
        s3_address = runtime.port("127.0.0.1:8190")
        assert app_env["AWS_ENDPOINT_URL_S3"] == f"http://{s3_address}"
        source = tmp_path / "hello.txt"
        source.write_bytes(b"hello from an injected pod\n" * 100)
        aws = str(Path(sys.executable).parent / "aws")
        target = f"s3://{bucket}/injected/hello.txt"
        subprocess.run([aws, "s3", "cp", str(source), target], env=app_env, check=True, timeout=60)
        back = subprocess.run(
            [aws, "s3", "cp", target, "-"], env=app_env, check=True, timeout=60, capture_output=True
        )
        assert back.stdout == source.read_bytes()
        stored = s3.client().get_object(Bucket=bucket, Key="injected/hello.txt")["Body"].read()
        assert b"hello from an injected pod" not in stored
        with urllib.request.urlopen(f"http://{s3_address}/_s3proxy/whoami", timeout=5) as r:
            identity = json.loads(r.read())
        assert identity["vault"]["auth"] == "jwt"


@contextlib.contextmanager
def run_pod(
    spec: dict[str, Any], key: rsa.RSAPrivateKey, s3: S3Server, tmp_path: Path
) -> Iterator[tuple[PodRuntime, dict[str, str]]]:
    """The injected proxy of ``spec`` running as its container says, until the block ends; the
    runtime and the app container's environment (its mounts made, as the kubelet would)."""
    secrets = {"moto-keys": {"access-key-id": s3.access_key, "secret-access-key": s3.secret_key}}
    runtime = PodRuntime(spec, tmp_path / "pod", secrets)
    (proxy,) = spec["initContainers"]
    (app,) = spec["containers"]
    assert "command" not in proxy  # so the image's entrypoint, s3proxy, runs with its args
    proxy_env = runtime.env(proxy, runtime.mounts(proxy, key))
    machine = {  # no ~/.aws and no instance metadata in a container; none of this machine's
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    entrypoint = str(Path(sys.executable).parent / "s3proxy")
    process = _spawn(
        [entrypoint, *proxy["args"]], clean_env({**machine, **proxy_env}), tmp_path / "proxy.log"
    )
    try:
        host, port = runtime.port("127.0.0.1:8190").split(":")

        def listening() -> bool:
            if process.proc.poll() is not None:
                raise RuntimeError(process.log_text())
            with socket.create_connection((host, int(port)), timeout=0.2):
                return True

        wait_for(listening, "the injected proxy")
        app_env = clean_env({**machine, **runtime.env(app, runtime.mounts(app, key))})
        for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):  # this machine's, not the pod's
            app_env.pop(name, None)
        yield runtime, app_env
    finally:
        process.stop()


def test_virtual_addressing_goes_path_style_against_the_ip_endpoint(
    proxy: Any, bucket: str
) -> None:
    """botocore's S3 endpoint rules (those every SDK shares) with addressing_style virtual: a
    host name endpoint would address bucket.localhost, the IP endpoint stays path-style."""
    from botocore.config import Config

    def client(endpoint: str) -> Any:
        return boto3_client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="any",
            aws_secret_access_key="any",
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "virtual"}),
        )

    named = client(f"http://localhost:{proxy.port}")
    url = named.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    assert url.startswith(f"http://{bucket}.localhost:{proxy.port}/k?")
    by_ip = client(f"http://127.0.0.1:{proxy.port}")
    sent: list[str] = []
    by_ip.meta.events.register("before-send.s3", lambda request, **_: sent.append(request.url))
    by_ip.put_object(Bucket=bucket, Key="virtual/k", Body=b"path style")
    assert by_ip.get_object(Bucket=bucket, Key="virtual/k")["Body"].read() == b"path style"
    assert sent and all(u.startswith(f"http://127.0.0.1:{proxy.port}/{bucket}/") for u in sent)


def test_a_renewed_certificate_is_served_to_new_connections(tmp_path: Path) -> None:
    """cert-manager rewrites the Secret's files in place; the webhook re-reads them."""
    import asyncio

    from s3proxy.server.tls import CertificateFiles

    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    cert, key = make_certificate(first_dir)
    new_cert, new_key = make_certificate(second_dir)
    files = CertificateFiles(str(cert), str(key))
    assert files.reload_if_changed() is False

    async def handshake(cafile: Path) -> bool:
        server = await asyncio.start_server(
            lambda r, w: w.close(), "127.0.0.1", 0, ssl=files.context
        )
        port = server.sockets[0].getsockname()[1]
        client = ssl.create_default_context(cafile=str(cafile))
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
            writer.close()
            return True
        except ssl.SSLCertVerificationError:
            return False
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(handshake(cert)) and not asyncio.run(handshake(new_cert))
    old = tmp_path / "old.crt"
    old.write_bytes(cert.read_bytes())
    cert.write_bytes(new_cert.read_bytes())
    key.write_bytes(new_key.read_bytes())
    os.utime(cert, (time.time() + 5, time.time() + 5))
    assert files.reload_if_changed() is True
    assert asyncio.run(handshake(new_cert)) and not asyncio.run(handshake(old))


def test_the_tls_annotation_gives_the_app_https_and_the_proxys_ca(webhook: Webhook) -> None:
    """``s3proxy.io/tls: "true"``: the proxy's HTTPS listener, the memory volume it writes its
    CA to, mounted read-only into the app containers, whose AWS_ENDPOINT_URL_S3 is the HTTPS
    listener and AWS_CA_BUNDLE the CA; in container mode not into init containers (they run
    before the proxy, the volume is empty then)."""
    patched = inject(
        webhook,
        pod(
            {"s3proxy.io/tls": "true"},
            initContainers=[{"name": "migrate", "image": "busybox:1.36"}],
        ),
    )
    spec = patched["spec"]
    volume = by_name(spec["volumes"])["s3proxy-tls-ca"]
    assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Mi"}
    proxy, migrate = spec["initContainers"]
    assert env(proxy)["S3PROXY_TLS_LISTEN"] == "127.0.0.1:8443"
    assert env(proxy)["S3PROXY_TLS_CA_OUT"] == "/var/run/s3proxy.io/tls/ca.pem"
    assert env(proxy)["S3PROXY_TLS_CA_BUNDLE_OUT"] == "/var/run/s3proxy.io/tls/ca-bundle.pem"
    writable = {"name": "s3proxy-tls-ca", "mountPath": "/var/run/s3proxy.io/tls"}
    assert writable in proxy["volumeMounts"]
    readonly = {**writable, "readOnly": True}
    for app in (spec["containers"][0], migrate):  # native mode: init containers run after it
        assert env(app)["AWS_ENDPOINT_URL_S3"] == "https://127.0.0.1:8443"
        assert env(app)["AWS_CA_BUNDLE"] == "/var/run/s3proxy.io/tls/ca-bundle.pem"
        assert app["volumeMounts"] == [readonly]
    old = inject(
        webhook,
        pod(
            {"s3proxy.io/tls": "true", "s3proxy.io/sidecar-mode": "container"},
            initContainers=[{"name": "migrate", "image": "busybox:1.36"}],
        ),
    )["spec"]
    (migrate,) = old["initContainers"]
    assert "volumeMounts" not in migrate and "AWS_CA_BUNDLE" not in env(migrate)
    proxy, app = old["containers"]
    assert env(app)["AWS_CA_BUNDLE"] == "/var/run/s3proxy.io/tls/ca-bundle.pem"
    assert readonly in app["volumeMounts"] and writable in proxy["volumeMounts"]
    without = inject(webhook, pod())["spec"]
    assert "s3proxy-tls-ca" not in by_name(without["volumes"])
    assert "AWS_CA_BUNDLE" not in env(without["containers"][0])
    assert "S3PROXY_TLS_LISTEN" not in env(without["initContainers"][0])


def test_the_tls_annotation_leaves_what_the_app_set_and_refuses_its_port(
    webhook: Webhook,
) -> None:
    own = [
        {"name": "AWS_ENDPOINT_URL_S3", "value": "https://localhost:8443"},
        {"name": "AWS_CA_BUNDLE", "value": "/etc/bundle.pem"},
    ]
    spec = inject(
        webhook,
        pod({"s3proxy.io/tls": "true"}, containers=[{"name": "app", "image": "a", "env": own}]),
    )["spec"]
    assert env(spec["containers"][0]) == {e["name"]: e["value"] for e in own}
    taken = pod(
        {"s3proxy.io/tls": "true"},
        containers=[{"name": "app", "image": "a", "ports": [{"containerPort": 8443}]}],
    )
    response = webhook.review(taken)
    assert "patch" not in response and "8443" in response["warnings"][0]
    invalid = webhook.review(pod({"s3proxy.io/tls": "yes"}))
    assert "patch" not in invalid and "tls" in invalid["warnings"][0]


def test_the_injected_tls_sidecar_serves_the_app_over_https_with_the_shared_ca(
    webhook: Webhook,
    jwt_vault: tuple[Any, rsa.RSAPrivateKey],
    s3: S3Server,
    bucket: str,
    tmp_path: Path,
) -> None:
    """The tls annotation's output, run: the proxy writes its CA into the shared volume, and
    the app's env alone (AWS_ENDPOINT_URL_S3 https, AWS_CA_BUNDLE) leads the AWS CLI to it."""
    vault, key = jwt_vault
    original = pod(
        {
            "s3proxy.io/tls": "true",
            "s3proxy.io/vault-addr": vault.addr,
            "s3proxy.io/vault-auth": "jwt",
            "s3proxy.io/vault-role": "backup-writer",
            "s3proxy.io/vault-audience": "vault",
            "s3proxy.io/s3-endpoint": s3.endpoint,
            "s3proxy.io/s3-region": s3.region,
            "s3proxy.io/s3-credentials-secret": "moto-keys",
        },
        containers=[
            {
                "name": "app",
                "image": "amazon/aws-cli:2.17.0",
                "env": [
                    {"name": "AWS_ACCESS_KEY_ID", "value": "any"},
                    {"name": "AWS_SECRET_ACCESS_KEY", "value": "any"},
                    {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"},
                ],
            }
        ],
    )
    spec = inject(webhook, original)["spec"]
    with run_pod(spec, key, s3, tmp_path) as (runtime, app_env):
        tls_address = runtime.port("127.0.0.1:8443")
        assert app_env["AWS_ENDPOINT_URL_S3"] == f"https://{tls_address}"
        bundle = Path(app_env["AWS_CA_BUNDLE"]).read_bytes()
        ca = (Path(app_env["AWS_CA_BUNDLE"]).parent / "ca.pem").read_bytes()
        # the proxy's CA, then the CAs the proxy trusts, for the app's other AWS endpoints
        assert bundle.startswith(ca) and bundle.count(b"-----BEGIN CERTIFICATE-----") > 10
        aws = str(Path(sys.executable).parent / "aws")
        target = f"s3://{bucket}/injected/tls.txt"
        put = subprocess.run(
            [aws, "s3", "cp", "-", target], input=b"over TLS\n", env=app_env, timeout=60
        )
        assert put.returncode == 0
        back = subprocess.run(
            [aws, "s3", "cp", target, "-"], env=app_env, check=True, timeout=60, capture_output=True
        )
        assert back.stdout == b"over TLS\n"
        refused = subprocess.run(
            [aws, "s3", "ls", f"s3://{bucket}/"],
            env={k: v for k, v in app_env.items() if k != "AWS_CA_BUNDLE"},
            capture_output=True,
            timeout=60,
        )
        assert refused.returncode != 0 and b"CERTIFICATE_VERIFY_FAILED" in refused.stderr
