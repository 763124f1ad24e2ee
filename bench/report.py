"""The benchmark's results: samples of repeated runs, their medians, the issues' targets
(issue 22, and issue 10 before it) checked against them, and the markdown that shows both."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

PATHS = ("direct", "nginx", "s3proxy")
X = "\N{MULTIPLICATION SIGN}"
NONE = "\N{EN DASH}"
HIDDEN = {"requests"}  # recorded for CPU per request and the Vault count, not shown


@dataclass
class Results:
    order: list[str] = field(default_factory=list)  # workload names, in run order
    better: dict[str, dict[str, bool]] = field(default_factory=dict)  # figure: higher better?
    big: set[str] = field(default_factory=set)  # workloads that move the large object
    tls: set[str] = field(default_factory=set)  # workloads over the TLS listeners
    samples: dict[tuple[str, str, str], list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )
    cpu: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    rss: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    cpu_per_request: dict[tuple[str, str], list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )
    upstream_cpu: dict[tuple[str, str], list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )
    upstream_requests: dict[tuple[str, str], list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )
    start_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    load: list[float] = field(default_factory=list)  # 1-min load average after each run
    vault_calls: int = 0
    writes: int = 0
    md5_mb_s: float = 0.0

    def add(self, workload: str, path: str, figures: dict[str, float]) -> None:
        if workload not in self.order:
            self.order.append(workload)
        for name, value in figures.items():
            self.samples[(workload, name, path)].append(value)

    def median(self, workload: str, name: str, path: str) -> float:
        values = self.samples.get((workload, name, path), [])
        return statistics.median(values) if values else math.nan

    def spread(self, workload: str, name: str, path: str) -> float:
        """(max - min) / median of the repeated runs, as a fraction."""
        values = self.samples.get((workload, name, path), [])
        mid = statistics.median(values) if values else 0
        return (max(values) - min(values)) / mid if len(values) > 1 and mid else math.nan

    def ratio(self, workload: str, name: str) -> float:
        nginx = self.median(workload, name, "nginx")
        return self.median(workload, name, "s3proxy") / nginx if nginx else math.nan


def fmt(value: float) -> str:
    if math.isnan(value):
        return NONE
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def short(figures: dict[str, float]) -> str:
    """One run's figures on one line."""
    return ", ".join(f"{k} {fmt(v)}" for k, v in figures.items() if k not in HIDDEN)


def load_range(values: list[float]) -> str:
    if not values:
        return NONE
    return f"median {statistics.median(values):.1f}, {min(values):.1f} to {max(values):.1f}"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def figures_table(res: Results) -> list[str]:
    lines = [
        "| workload | figure | direct | nginx | s3proxy | s3proxy / nginx | s3proxy spread |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for workload in res.order:
        names = [n for n in res.better.get(workload, {}) if n not in HIDDEN]
        for name in names:
            cells = [fmt(res.median(workload, name, p)) for p in PATHS]
            ratio = res.ratio(workload, name)
            spread = res.spread(workload, name, "s3proxy")
            lines.append(
                f"| {workload} | {name} | {' | '.join(cells)} | "
                f"{fmt(ratio)}{'' if math.isnan(ratio) else X} | "
                f"{NONE if math.isnan(spread) else f'{spread:.0%}'} |"
            )
    return lines


def resources_table(res: Results) -> list[str]:
    lines = [
        "| workload | nginx CPU s | s3proxy CPU s | s3proxy / nginx | CPU µs per request "
        "(nginx / s3proxy) | nginx peak RSS MiB | "
        "s3proxy peak RSS MiB | upstream CPU s (direct / nginx / s3proxy) | "
        "upstream requests (direct / nginx / s3proxy) |",
        "|---|---:|---:|---:|---|---:|---:|---|---|",
    ]
    for workload in res.order:
        ncpu = _median(res.cpu[(workload, "nginx")])
        pcpu = _median(res.cpu[(workload, "s3proxy")])
        up = " / ".join(fmt(_median(res.upstream_cpu[(workload, p)])) for p in PATHS)
        served = " / ".join(fmt(_median(res.upstream_requests[(workload, p)])) for p in PATHS)
        share = pcpu / ncpu if ncpu else math.nan
        per = " / ".join(fmt(_median(res.cpu_per_request[(workload, p)])) for p in PATHS[1:])
        lines.append(
            f"| {workload} | {fmt(ncpu)} | {fmt(pcpu)} | {fmt(share)}{X} | {per} | "
            f"{fmt(_median(res.rss[(workload, 'nginx')]))} | "
            f"{fmt(_median(res.rss[(workload, 's3proxy')]))} | {up} | {served} |"
        )
    return lines


@dataclass(frozen=True)
class Check:
    target: str
    value: float
    limit: float
    at_least: bool
    unit: str = X

    @property
    def passed(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def verdict(self) -> str:
        if math.isnan(self.value):
            return "not measured"
        if self.passed:
            return "met"
        gap = f"{abs(self.limit - self.value):.3g}{self.unit}"
        if self.at_least:
            if self.value <= 0:
                return "MISSED"
            return f"MISSED: needs {self.limit / self.value:.2f}{X} (short by {gap})"
        if self.limit == 0:
            return f"MISSED by {gap}"
        return f"MISSED: {self.value / self.limit:.2f}{X} the limit (over by {gap})"


@dataclass(frozen=True)
class Targets:
    """One issue's targets for the plain listener's workloads."""

    issue: int
    rate_vs_nginx: float  # wrk req/s at least this times nginx's
    p50_vs_nginx: float  # wrk p50 at most this times nginx's
    get_mb_s: float  # large GET at least
    put_of_md5: float  # large PUT at least this share of one core's MD5
    ready_s: float  # start to first served GET at most
    cpu_us: float | None = None  # CPU µs per 4 KiB keep-alive request at most


ISSUE_10 = Targets(10, 0.6, 2.0, 2000, 0.85, 1.0)
ISSUE_22 = Targets(22, 0.5, 3.0, 1500, 0.8, 0.5, cpu_us=250)


def _workload_checks(res: Results, workload: str, targets: Targets) -> list[Check]:
    def ratio(name: str, limit: float, at_least: bool) -> Check:
        relation = ">=" if at_least else "<="
        target = f"{workload}: {name} {relation} {limit:g}{X} nginx"
        return Check(target, res.ratio(workload, name), limit, at_least)

    def absolute(text: str, name: str, limit: float, at_least: bool, unit: str) -> Check:
        return Check(
            f"{workload}: {text}", res.median(workload, name, "s3proxy"), limit, at_least, unit
        )

    no_errors = absolute("no errors", "errors", 0, False, "")
    if workload.startswith("wrk "):
        found = [
            ratio("req/s", targets.rate_vs_nginx, True),
            ratio("p50 ms", targets.p50_vs_nginx, False),
            no_errors,
        ]
        if targets.cpu_us is not None and "new connection" not in workload:
            per = _median(res.cpu_per_request[(workload, "s3proxy")])
            text = f"{workload}: <= {targets.cpu_us:g} µs CPU per request"
            found.append(Check(text, per, targets.cpu_us, False, " µs"))
        return found
    if workload.startswith("curl GET"):
        text = f">= {targets.get_mb_s:,.0f} MB/s"
        return [absolute(text, "MB/s", targets.get_mb_s, True, " MB/s"), ratio("MB/s", 1.0, True)]
    if workload.startswith("curl PUT"):
        limit = targets.put_of_md5 * res.md5_mb_s
        text = f">= {targets.put_of_md5:.0%} of one core's MD5 ({fmt(limit)} MB/s)"
        return [absolute(text, "MB/s", limit, True, " MB/s"), ratio("MB/s", 1.0, True)]
    if workload.startswith("boto3 "):
        found = []
        for name, higher in res.better[workload].items():
            if name == "errors":
                found.append(no_errors)
            elif name not in HIDDEN:
                found.append(ratio(name, 1.0, higher))
        return found
    return []


def checks(res: Results, targets: Targets = ISSUE_22) -> list[Check]:
    """An issue's targets, for the plain listener (the TLS rows are in :func:`tls_lines`)."""
    plain = [w for w in res.order if w not in res.tls]
    found = [c for w in plain for c in _workload_checks(res, w, targets)]
    peaks = {w: _median(res.rss[(w, "s3proxy")]) for w in plain}
    highest = max(peaks.values(), default=math.nan)
    found.append(Check("s3proxy peak RSS < 100 MiB (every workload)", highest, 100, False, " MiB"))
    small = max((v for w, v in peaks.items() if w not in res.big), default=math.nan)
    large = max((v for w, v in peaks.items() if w in res.big), default=math.nan)
    flat = "peak RSS flat in object size (large-object peak minus 4 KiB peak <= 16 MiB)"
    found.append(Check(flat, large - small, 16, False, " MiB"))
    per_100 = 100 * res.vault_calls / res.writes if res.writes else math.nan
    vault = f"<= 1 Vault call per 100 writes, warm ({res.vault_calls} calls, {res.writes:,} writes)"
    found.append(Check(vault, per_100, 1, False, ""))
    ready = f"ready <= {targets.ready_s:g} s after start (first 200 to GET of an encrypted object)"
    found.append(Check(ready, _median(res.start_s["s3proxy"]), targets.ready_s, False, " s"))
    return found


def targets_table(res: Results, targets: Targets = ISSUE_22) -> list[str]:
    lines = [f"| target (issue {targets.issue}) | measured | result |", "|---|---:|---|"]
    for check in checks(res, targets):
        lines.append(f"| {check.target} | {fmt(check.value)}{check.unit} | {check.verdict()} |")
    return lines


def tls_lines(res: Results, plain: str = "wrk GET 4 KiB, 64 conn") -> list[str]:
    """What TLS adds per request, in CPU µs of the proxy process (nginx for reference): over
    keep-alive connections (record encryption), and with a new connection for each request
    against the same in plain HTTP (the handshake)."""
    keep = next((w for w in res.order if w in res.tls and "keep-alive" in w), None)
    each = next((w for w in res.order if w in res.tls and "handshake" in w), None)
    new = next((w for w in res.order if w not in res.tls and "new connection" in w), None)
    if keep is None or each is None or new is None or plain not in res.order:
        return []

    def per(workload: str, path: str) -> float:
        return _median(res.cpu_per_request[(workload, path)])

    parts = []
    for path in ("s3proxy", "nginx"):
        record = per(keep, path) - per(plain, path)
        handshake = per(each, path) - per(new, path)
        parts.append(f"{path} +{fmt(record)} µs keep-alive, +{fmt(handshake)} µs a handshake")
    peak = _median(res.rss[(each, "s3proxy")])
    return [
        f"- TLS, CPU per 4 KiB GET against plain (64 connections): {'; '.join(parts)}; s3proxy "
        f"peak RSS with 64 TLS connections {fmt(peak)} MiB"
    ]


def other_lines(res: Results) -> list[str]:
    return [
        *tls_lines(res),
        f"- start to first served GET (median): s3proxy {fmt(_median(res.start_s['s3proxy']))} s, "
        f"nginx {fmt(_median(res.start_s['nginx']))} s",
        f"- Vault transit calls during the measured s3proxy runs: {res.vault_calls} "
        f"for {res.writes:,} writes",
        f"- one core's MD5 (hashlib, 1 MiB pieces): {fmt(res.md5_mb_s)} MB/s",
    ]
