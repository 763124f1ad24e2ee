"""The injector's decision and mutation: an AdmissionReview v1 request in, an AdmissionReview v1
response out (allowed, with a base64 JSONPatch when the pod is injected). Pure: no I/O.

Pods are never refused: whatever is not understood leaves the pod unchanged, with a warning the
API server shows to whoever created it. The rules are listed in docs/kubernetes.md.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from s3proxy.k8s import sidecar
from s3proxy.k8s.settings import DOMAIN, SettingsError, for_pod

INJECT = f"{DOMAIN}/inject"
STATUS = f"{DOMAIN}/inject-status"
SKIP_CONTAINERS = "eks.amazonaws.com/skip-containers"
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
SKIPPED_NAMESPACES = ("kube-system", "kube-public")
ENDPOINT_VAR = "AWS_ENDPOINT_URL_S3"

# What EKS's pod identity webhook gives containers for IRSA and Pod Identity. When it ran before
# this injector, these are moved from the app containers to the proxy (docs/threat-model.md).
CREDENTIAL_VARS = (
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)
SHARED_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_STS_REGIONAL_ENDPOINTS")
CREDENTIAL_DIRS = (
    "/var/run/secrets/eks.amazonaws.com/serviceaccount",
    "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount",
)
# The volumes EKS's webhook projects the IRSA and Pod Identity tokens into (mounted at the
# directories above; a mount of them anywhere else is taken away all the same).
CREDENTIAL_VOLUMES = ("aws-iam-token", "eks-pod-identity-token")
WARNING_LIMIT = 120


class NotUnderstood(Exception):
    """The pod is left unchanged; the message becomes the response's warning."""


def escape(key: str) -> str:
    """A JSON pointer token (RFC 6901): '~' as '~0', '/' as '~1'."""
    return key.replace("~", "~0").replace("/", "~1")


def review(body: Any, defaults: Mapping[str, str]) -> dict[str, Any]:
    """The AdmissionReview response to the AdmissionReview ``body``."""
    request = body.get("request") if isinstance(body, dict) else None
    uid = request.get("uid") if isinstance(request, dict) else None
    response: dict[str, Any] = {"uid": uid if isinstance(uid, str) else "", "allowed": True}
    try:
        if not isinstance(request, dict):
            raise NotUnderstood("no AdmissionReview request")
        operations = plan(request, defaults)
    except NotUnderstood as exc:
        response["warnings"] = [f"s3proxy not injected: {exc}"[:WARNING_LIMIT]]
    else:
        if operations:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(operations).encode()).decode()
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise NotUnderstood(f"{what} is not an object")
    return value


def _containers(spec: dict[str, Any], field: str) -> list[dict[str, Any]]:
    found = spec.get(field, [])
    if not isinstance(found, list):
        raise NotUnderstood(f"spec.{field} is not a list")
    for item in found:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise NotUnderstood(f"spec.{field} has an entry without a name")
        for key in ("env", "volumeMounts", "ports"):
            entries = item.get(key, [])
            if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                raise NotUnderstood(f"{key} of {item['name']} is not a list of objects")
    return found


def _annotations(metadata: dict[str, Any]) -> dict[str, str]:
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(v, str) for v in annotations.values()
    ):
        raise NotUnderstood("metadata.annotations is not a map of strings")
    return annotations


def plan(request: dict[str, Any], defaults: Mapping[str, str]) -> list[dict[str, Any]]:
    """The JSONPatch operations for the pod of ``request``; [] when it is not for us."""
    if request.get("operation") != "CREATE":
        return []
    kind = request.get("kind")
    if not isinstance(kind, dict) or kind.get("kind") != "Pod" or kind.get("group"):
        raise NotUnderstood(f"not a Pod: {kind!r}")
    pod = _dict(request.get("object"), "the object")
    metadata = _dict(pod.get("metadata", {}), "metadata")
    annotations = _annotations(metadata)
    wanted = annotations.get(INJECT, "false")
    if wanted == "false" or annotations.get(STATUS) == "injected":
        return []
    if wanted != "true":
        raise NotUnderstood(f'{INJECT} must be "true" or "false", not {wanted!r}')
    namespace = request.get("namespace") or metadata.get("namespace") or ""
    if namespace in SKIPPED_NAMESPACES:
        raise NotUnderstood(f"pods in {namespace} are never injected")
    try:
        settings = for_pod(defaults, annotations)
    except SettingsError as exc:
        raise NotUnderstood(str(exc)) from exc
    if not settings["vault-addr"]:
        raise NotUnderstood(f"no vault-addr (annotation {DOMAIN}/vault-addr)")
    spec = _dict(pod.get("spec"), "spec")
    account = str(spec.get("serviceAccountName") or "default")
    try:
        settings["transit-key"] = transit_key(settings["transit-key"], namespace, account)
    except SettingsError as exc:
        raise NotUnderstood(str(exc)) from exc
    return _Mutation(spec, settings, annotations).operations()


def transit_key(template: str, namespace: str, service_account: str) -> str:
    """The pod's transit key name: ``{namespace}`` and ``{serviceaccount}`` in the setting
    replaced by the pod's (docs/kubernetes.md, Transit keys per namespace)."""
    if "{namespace}" in template and not namespace:
        raise SettingsError("transit-key names {namespace}, but the pod has no namespace")
    name = template.replace("{namespace}", namespace)
    return name.replace("{serviceaccount}", service_account)


class _Mutation:
    """The operations for one pod: app env first (its indices are the pod's own), then the
    proxy's volumes and container, then the annotations."""

    def __init__(
        self, spec: dict[str, Any], settings: Mapping[str, str], annotations: Mapping[str, str]
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.annotations = annotations
        self.native = settings["sidecar-mode"] == "native"
        self.containers = _containers(spec, "containers")
        self.init_containers = _containers(spec, "initContainers")
        if not self.containers:
            raise NotUnderstood("spec.containers is empty")
        self._check_conflicts()
        self.moved_env: dict[str, dict[str, Any]] = {}
        self.moved_mounts: dict[str, dict[str, Any]] = {}

    def _check_conflicts(self) -> None:
        every = self.containers + self.init_containers
        if any(c["name"] == sidecar.NAME for c in every):
            raise NotUnderstood(f"a container is already named {sidecar.NAME}")
        ports = {p.get("containerPort") for c in every for p in c.get("ports", [])}
        if ports & {sidecar.S3_PORT, sidecar.ADMIN_PORT}:
            raise NotUnderstood(f"a container uses port {sidecar.S3_PORT} or {sidecar.ADMIN_PORT}")
        volumes = self.spec.get("volumes", [])
        if not isinstance(volumes, list) or not all(isinstance(v, dict) for v in volumes):
            raise NotUnderstood("spec.volumes is not a list of objects")
        if {v.get("name") for v in volumes} & set(sidecar.VOLUMES):
            raise NotUnderstood("a volume already has one of the proxy's volume names")

    def operations(self) -> list[dict[str, Any]]:
        ops: list[dict[str, Any]] = []
        for index, item in enumerate(self.containers):
            ops += self._app(f"/spec/containers/{index}", item)
        # Init containers lose the pod's credentials in both modes. In 'container' mode they
        # run before the proxy exists, so they get no endpoint: S3 is out of their reach.
        for index, item in enumerate(self.init_containers):
            ops += self._app(f"/spec/initContainers/{index}", item, endpoint=self.native)
        ops += self._volumes()
        ops.append(self._insert())
        ops += self._annotate()
        return ops

    def _app(self, path: str, item: dict[str, Any], endpoint: bool = True) -> list[dict[str, Any]]:
        """Sets the endpoint (unless ``endpoint`` is false); takes the pod's cloud credentials
        away from the container."""
        env = item.get("env", [])
        kept = [e for e in env if e.get("name") not in CREDENTIAL_VARS]
        if len(kept) < len(env):  # EKS gave this container credentials: the proxy takes them
            for entry in env:
                if entry.get("name") in CREDENTIAL_VARS + SHARED_VARS:
                    self.moved_env.setdefault(entry["name"], entry)
        if endpoint and not any(e.get("name") == ENDPOINT_VAR for e in env):
            kept.append({"name": ENDPOINT_VAR, "value": sidecar.ENDPOINT})
        ops: list[dict[str, Any]] = []
        if kept != env:
            ops.append(
                {"op": "replace" if "env" in item else "add", "path": f"{path}/env", "value": kept}
            )
        mounts = item.get("volumeMounts", [])
        kept_mounts = [
            m
            for m in mounts
            if m.get("mountPath") not in CREDENTIAL_DIRS and m.get("name") not in CREDENTIAL_VOLUMES
        ]
        if kept_mounts != mounts:
            for mount in mounts:
                if mount not in kept_mounts:
                    self.moved_mounts.setdefault(mount.get("mountPath", ""), mount)
            ops.append({"op": "replace", "path": f"{path}/volumeMounts", "value": kept_mounts})
        return ops

    def _volumes(self) -> list[dict[str, Any]]:
        new = sidecar.volumes(self.settings)
        if "volumes" not in self.spec and new:
            return [{"op": "add", "path": "/spec/volumes", "value": new}]
        return [{"op": "add", "path": "/spec/volumes/-", "value": v} for v in new]

    def _insert(self) -> dict[str, Any]:
        account = self.spec.get("serviceAccountName") or "default"
        proxy = sidecar.container(
            self.settings,
            service_account=str(account),
            extra_env=list(self.moved_env.values()),
            extra_mounts=list(self.moved_mounts.values()),
        )
        field = "initContainers" if self.native else "containers"
        if field in self.spec:
            return {"op": "add", "path": f"/spec/{field}/0", "value": proxy}
        return {"op": "add", "path": f"/spec/{field}", "value": [proxy]}

    def _annotate(self) -> list[dict[str, Any]]:
        values = {STATUS: "injected"}
        skipped = [n for n in self.annotations.get(SKIP_CONTAINERS, "").split(",") if n.strip()]
        for item in self.init_containers + self.containers:
            if item["name"] not in skipped:
                skipped.append(item["name"])
        values[SKIP_CONTAINERS] = ",".join(n.strip() for n in skipped if n.strip() != sidecar.NAME)
        if not self.native and DEFAULT_CONTAINER not in self.annotations:
            values[DEFAULT_CONTAINER] = self.containers[0]["name"]
        path = "/metadata/annotations"
        return [{"op": "add", "path": f"{path}/{escape(k)}", "value": v} for k, v in values.items()]
