"""/metrics of real proxy processes: every family moves with traffic, the dashboard and alert
rules use only exported metrics, and processes sharing PROMETHEUS_MULTIPROC_DIR are summed."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from s3proxy.devstack import S3Server, Vault, free_port
from tests.conftest import ProxyProcess, start_proxy, upload_multipart

pytestmark = pytest.mark.timeout(120)

MONITORING = Path(__file__).parent.parent / "deploy" / "monitoring"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(admin: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        v for (n, found), v in samples.items() if n == name and set(labels.items()) <= set(found)
    )


def run(
    procs: list[ProxyProcess], workdir: Path, vault: Vault, s3: S3Server, **extra: str
) -> tuple[ProxyProcess, int]:
    admin = free_port()
    p = start_proxy(workdir, vault, s3, {"S3PROXY_ADMIN_LISTEN": f"127.0.0.1:{admin}", **extra})
    procs.append(p)
    return p, admin


def traffic(client: Any, raw: Any, bucket: str) -> None:
    """Writes, reads (twice: cached keys and layouts), a listing, a 404 and a tampered object."""
    data = b"m" * 300_000
    client.put_object(Bucket=bucket, Key="a", Body=data)
    for _ in range(2):
        assert client.get_object(Bucket=bucket, Key="a")["Body"].read() == data
    upload_multipart(client, bucket, "parts", [b"p" * 5 * 1024 * 1024, b"q" * 1000])
    for _ in range(2):
        assert client.get_object(Bucket=bucket, Key="parts", Range="bytes=0-9")["Body"].read()
    client.list_objects_v2(Bucket=bucket)
    client.list_objects_v2(Bucket=bucket)
    with pytest.raises(ClientError):
        client.get_object(Bucket=bucket, Key="missing")
    client.put_object(Bucket=bucket, Key="tampered", Body=b"t" * 1000)
    stored = bytearray(raw.get_object(Bucket=bucket, Key="tampered")["Body"].read())
    stored[-40] ^= 1
    meta = raw.head_object(Bucket=bucket, Key="tampered")["Metadata"]
    raw.put_object(Bucket=bucket, Key="tampered", Body=bytes(stored), Metadata=meta)
    with pytest.raises(Exception):  # noqa: B017 - a 500 or a cut body, both are refusals
        client.get_object(Bucket=bucket, Key="tampered")["Body"].read()


def test_metrics_move_with_traffic(
    procs: list[ProxyProcess], workdir: Path, vault: Vault, s3: S3Server, raw: Any, bucket: str
) -> None:
    p, admin = run(procs, workdir, vault, s3)
    before = scrape(admin)
    assert value(before, "s3proxy_requests_total") == 0
    assert value(before, "s3proxy_credential_refreshes_total") >= 1
    traffic(p.client(retries={"total_max_attempts": 1}), raw, bucket)
    after = scrape(admin)

    assert value(after, "s3proxy_requests_total", operation="PutObject", status="200") == 2
    assert value(after, "s3proxy_requests_total", operation="UploadPart", status="200") == 2
    assert value(after, "s3proxy_requests_total", operation="GetObject", status="404") == 1
    assert value(after, "s3proxy_request_duration_seconds_count", operation="GetObject") == 6
    assert value(after, "s3proxy_request_body_bytes_total", operation="PutObject") >= 301_000
    assert value(after, "s3proxy_response_body_bytes_total", operation="GetObject") >= 600_000
    assert value(after, "s3proxy_upstream_request_duration_seconds_count", method="PUT") >= 2
    assert value(after, "s3proxy_requests_in_flight") == 0
    assert value(after, "s3proxy_vault_request_duration_seconds_count", kind="datakey") >= 1
    assert value(after, "s3proxy_vault_request_duration_seconds_count", outcome="ok") >= 2
    assert value(after, "s3proxy_vault_up") == 1
    assert value(after, "s3proxy_key_cache_hits_total", cache="unwrap") >= 1
    assert value(after, "s3proxy_key_cache_hits_total", cache="datakey") >= 1
    assert value(after, "s3proxy_key_cache_misses_total", cache="unwrap") >= 1
    assert value(after, "s3proxy_object_cache_hits_total", cache="size") >= 1
    assert value(after, "s3proxy_object_cache_hits_total", cache="layout") >= 1
    assert value(after, "s3proxy_object_cache_misses_total", cache="size") >= 1
    assert value(after, "s3proxy_integrity_failures_total") == 1
    assert value(after, "s3proxy_credential_refresh_failures_total") == 0


def monitored_names() -> set[str]:
    names: set[str] = set()
    for path in MONITORING.iterdir():
        names.update(re.findall(r"\bs3proxy_[a-z0-9_]+", path.read_text()))
    return names


def test_dashboard_and_alerts_use_only_exported_metrics(
    procs: list[ProxyProcess], workdir: Path, vault: Vault, s3: S3Server, raw: Any, bucket: str
) -> None:
    import json

    import yaml

    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {
        "S3ProxyIntegrityFailure",
        "S3ProxyVaultUnavailable",
        "S3ProxyErrorRatio",
        "S3ProxyCredentialRefreshFailing",
    } <= alerts
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    assert all(panel["targets"] for panel in dashboard["panels"])

    p, admin = run(procs, workdir, vault, s3)
    traffic(p.client(retries={"total_max_attempts": 1}), raw, bucket)
    exported = {name for name, _ in scrape(admin)}
    used = monitored_names()
    assert len(used) >= 12
    assert not used - exported, sorted(used - exported)


def test_processes_sharing_a_multiprocess_dir_are_summed(
    procs: list[ProxyProcess],
    workdir: Path,
    vault: Vault,
    s3: S3Server,
    bucket: str,
    tmp_path: Path,
) -> None:
    # Two single-process proxies sharing one directory: what S3PROXY_WORKERS does inside one.
    shared = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "S3PROXY_WORKERS": "1"}
    first, first_admin = run(procs, workdir, vault, s3, **shared)
    second, second_admin = run(procs, workdir, vault, s3, **shared)
    for i in range(3):
        first.client().put_object(Bucket=bucket, Key=f"first-{i}", Body=b"1")
    for i in range(2):
        second.client().put_object(Bucket=bucket, Key=f"second-{i}", Body=b"2")
    for admin in (first_admin, second_admin):
        samples = scrape(admin)
        assert value(samples, "s3proxy_requests_total", operation="PutObject", status="200") == 5
        assert value(samples, "s3proxy_requests_in_flight") == 0
        assert value(samples, "s3proxy_vault_up") == 1
