"""`make bench`'s listing step (bench/listing.py) on 300 objects: RGW, OpenBao, redis-server and
four proxies come up on loopback, every row of the report has its figures, and what the proxy
listed and HEADed equals what was written (the run fails otherwise). Fails where Ceph is missing
(`make system-deps`), skipped without redis-server."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from s3proxy.devrgw import available

REPO = Path(__file__).resolve().parent.parent
PATHS = (
    "direct",
    "s3proxy, fresh, nothing cached",
    "s3proxy, fresh, shared cache warm",
    "s3proxy, warm (second listing)",
)

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="make system-deps")


def _rows(text: str) -> dict[tuple[str, str], list[str]]:
    """(workload, path) -> objects, wall s, ratio, upstream requests, per object, Vault calls,
    mismatches, store CPU s, proxy CPU s."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith(("| ListObjectsV2 |", "| HEAD, ")) and len(cells) == 11:
            rows[(cells[0], cells[1])] = cells[2:]
    return rows


@pytest.mark.timeout(120)
def test_listing_bench_reports_every_row_and_what_was_written(tmp_path: Path) -> None:
    assert available(), "Ceph is not installed: run `make system-deps`"
    out = tmp_path / "listing.md"
    args = ["--objects", "300", "--heads", "100", "--repeat", "2", "--output", str(out)]
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "listing.py"), *args],
        capture_output=True,
        text=True,
        timeout=110,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    rows = _rows(text)
    assert set(rows) == {("ListObjectsV2", p) for p in PATHS} | {
        ("HEAD, 16 at a time", "direct"),
        ("HEAD, 16 at a time", "direct, GET bytes=-160 instead (the proxy's request)"),
        ("HEAD, 16 at a time", "s3proxy, fresh, nothing cached"),
    }, rows
    for key, cells in rows.items():
        assert cells[6] == "0", key  # no size or ETag differs from the plaintext written
        float(cells[1]), float(cells[7])  # a wall time, the store's CPU
    # One upstream request per HEAD of a v3 object, and none per object on a warm listing.
    assert rows[("HEAD, 16 at a time", "s3proxy, fresh, nothing cached")][3] == "100"
    assert rows[("ListObjectsV2", "s3proxy, warm (second listing)")][3] == "1"
    assert rows[("ListObjectsV2", "s3proxy, fresh, shared cache warm")][3] == "1"  # (the cache's)
    assert rows[("ListObjectsV2", "s3proxy, fresh, nothing cached")][3] == "301"
    assert int(rows[("ListObjectsV2", "s3proxy, fresh, nothing cached")][5].split()[0]) <= 10
    assert "| target (issue 21) | measured | verdict |" in text
    assert "equal the plaintext written (so listings equal HEADs): yes" in text
