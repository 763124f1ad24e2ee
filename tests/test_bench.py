"""`make bench` in its quick mode (bench/run.py --quick): the whole stack comes up on loopback,
every workload runs through direct, nginx and s3proxy, and the report has a figure for each.
Skipped where nginx, wrk, Go or curl are missing (`make bench` installs them)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOLS = {"nginx": "/usr/sbin/nginx", "wrk": None, "go": None, "curl": None}
MISSING = [
    t for t, alt in TOOLS.items() if shutil.which(t) is None and not (alt and Path(alt).exists())
]

pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {' '.join(MISSING)} (make bench)")

CELL = r"\s*([0-9][0-9,.]*|nan)\s*"


@pytest.mark.timeout(150)
def test_quick_run_reports_every_workload_on_every_path(tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=140,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    rows = [
        line for line in text.splitlines() if line.startswith(("| wrk ", "| curl ", "| boto3 "))
    ]
    figures = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) == 7:  # workload | figure | direct | nginx | s3proxy | ratio | spread
            figures[(cells[0], cells[1])] = cells[2:5]
    workloads = {w for w, _ in figures}
    assert len(workloads) == 12, workloads
    for (workload, figure), values in figures.items():
        if "TLS" in workload:  # the upstream (direct) has no TLS listener
            assert values[0] == "\N{EN DASH}", (workload, values)
            values = values[1:]
        for value in values:
            assert re.fullmatch(CELL, value), f"{workload} {figure}: {values}"
    # Correctness through the proxy: boto3 read back every object it wrote.
    assert figures[("boto3 4 KiB PUT+GET, 16 threads", "errors")][2] == "0.00"
    assert "| target (issue 10) |" in text
    assert re.search(r"start to first served GET \(median\): s3proxy [0-9.]+ s", text)
    assert "Vault transit calls during the measured s3proxy runs" in text
    assert re.search(r"TLS, CPU per 4 KiB GET .*s3proxy \+-?[0-9.,]+ µs keep-alive", text)
