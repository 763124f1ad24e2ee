"""The reproducible benchmark of issue 10 (`make bench`; docs/performance.md).

Starts on 127.0.0.1 an in-memory S3 upstream (bench/upstream/main.go), nginx as a plain
reverse proxy in front of it, OpenBao and s3proxy; then runs every workload through each of
direct / nginx / s3proxy, alternating, ``--repeat`` times, and prints a markdown table of the
medians with the ratio s3proxy / nginx, the resources each proxy used, and the issue's targets
with by how much each is missed.

    .venv/bin/python bench/run.py [--repeat 3] [--quick] [--output FILE] [--profile DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

import loads
import machine
import profiles
import report
from procstats import Meter
from stack import BUCKET, Stack, http_status

from s3proxy.devstack import clean_env

REPO = Path(__file__).resolve().parent.parent
GiB = 2**30
MiB = 2**20


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, help="runs of every workload (medians)")
    p.add_argument("--quick", action="store_true", help="small sizes, short runs (~1 minute)")
    p.add_argument("--duration", type=float, help="seconds of each wrk run (10; quick: 1)")
    p.add_argument("--size-mib", type=int, help="large object size in MiB (1024; quick: 16)")
    p.add_argument("--small-count", type=int, help="boto3 4 KiB PUT+GET pairs (2000; quick: 100)")
    p.add_argument("--only", help="run only workloads whose name contains this text")
    p.add_argument("--output", type=Path, help="also write the markdown report here")
    p.add_argument("--profile", type=Path, help="after measuring, profile s3proxy with py-spy")
    p.add_argument("--log-level", default="INFO", help="S3PROXY_LOG_LEVEL (default INFO)")
    p.add_argument(
        "--upstream-checksum", default="crc32", help="S3PROXY_UPSTREAM_CHECKSUM (default crc32)"
    )
    p.add_argument("--workers", default="auto", help="S3PROXY_WORKERS (default auto)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = p.parse_args(argv)
    args.duration = args.duration or (1.0 if args.quick else 10.0)
    args.size_mib = args.size_mib or (16 if args.quick else 1024)
    args.small_count = args.small_count or (100 if args.quick else 2000)
    if args.quick and "--repeat" not in " ".join(argv):
        args.repeat = 1
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def require_tools() -> None:
    missing = [t for t in ("wrk", "nginx", "curl", "go") if shutil.which(t) is None]
    missing = [t for t in missing if not (t == "nginx" and Path("/usr/sbin/nginx").exists())]
    if missing:
        raise SystemExit(f"missing {' '.join(missing)}: run `make bench` (installs them)")


def write_big_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 64 * MiB)
            f.write(os.urandom(n))
            left -= n


def setup_objects(stack: Stack, settings: loads.Settings) -> None:
    """The objects the GET workloads read: plaintext directly upstream (for direct and
    nginx), encrypted through s3proxy; then one request of each kind on every path, so
    connection pools and the proxy's key and layout caches are warm."""
    body = os.urandom(4096)
    for path, key in (("direct", "small-plain"), ("s3proxy", "small-enc")):
        status = http_status(stack.ports[path], "PUT", f"/{BUCKET}/{key}", body)
        if status != 200:
            raise RuntimeError(f"PUT {key} through {path}: HTTP {status}")
    loads.curl(stack.url("direct"), "PUT", "big-plain", settings)
    loads.curl(stack.url("s3proxy"), "PUT", "big-enc", settings)
    for path in report.PATHS:
        loads.wrk(stack.url(path), "GET", loads.small_key(path), 16, 1)
        loads.wrk(stack.url(path), "PUT", "sink/put-4k", 16, 1)
        loads.curl(stack.url(path), "GET", loads.big_key(path), settings)


def writes_of(workload: str, figures: dict[str, float], settings: loads.Settings) -> int:
    if workload.startswith("wrk PUT"):
        return round(figures["requests"])
    if workload.startswith("curl PUT"):
        return 1
    if workload.startswith("boto3 upload_file"):
        return max(1, -(-settings.big_size // (8 * MiB)))
    if workload.startswith("boto3 4 KiB"):
        return settings.small_count
    return 0


def measure(
    stack: Stack, settings: loads.Settings, res: report.Results, repeat: int, only: str | None
) -> None:
    chosen = [w for w in loads.workloads(settings) if not only or only in w.name]
    for w in chosen:
        res.better[w.name] = w.higher_is_better
        if "iB" in w.name and "4 KiB" not in w.name:
            res.big.add(w.name)
        if w.tls:
            res.tls.add(w.name)
    for r in range(repeat):
        for i, w in enumerate(chosen):
            shift = (r + i) % len(report.PATHS)
            order = report.PATHS[shift:] + report.PATHS[:shift]
            for path in order:
                if w.tls and path == "direct":
                    continue  # the upstream speaks no TLS
                stack.check_alive()
                proxy = Meter(stack.pids[path]) if path != "direct" else None
                upstream = Meter(stack.pids["upstream"])
                calls = stack.vault_transit_calls() if path == "s3proxy" else 0
                served = stack.upstream_requests()
                for meter in (proxy, upstream):
                    if meter is not None:
                        meter.start()
                figures = w.run(stack.url(path, tls=w.tls), path)
                used = upstream.stop()
                res.upstream_requests[(w.name, path)].append(stack.upstream_requests() - served)
                res.upstream_cpu[(w.name, path)].append(used.cpu_s)
                if proxy is not None:
                    usage = proxy.stop()
                    res.cpu[(w.name, path)].append(usage.cpu_s)
                    res.rss[(w.name, path)].append(usage.peak_rss_mib)
                    if figures.get("requests"):
                        per_request = usage.cpu_s / figures["requests"] * 1e6
                        res.cpu_per_request[(w.name, path)].append(per_request)
                if path == "s3proxy":
                    res.vault_calls += stack.vault_transit_calls() - calls
                    res.writes += writes_of(w.name, figures, settings)
                res.add(w.name, path, figures)
                res.load.append(os.getloadavg()[0])
                print(
                    f"  [{r + 1}/{repeat}] {w.name} via {path}: {report.short(figures)}", flush=True
                )
        res.start_s["s3proxy"].append(stack.proxy_start_seconds(f"/{BUCKET}/small-enc"))
        res.start_s["nginx"].append(stack.nginx_start_seconds(f"/{BUCKET}/small-plain"))


def run(args: argparse.Namespace) -> str:
    require_tools()
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    workdir = Path(tempfile.mkdtemp(prefix="s3proxy-bench-", dir=base))
    size = args.size_mib * MiB
    need = 5 * size + GiB
    if machine.mem_available() < need:
        raise SystemExit(
            f"{need / GiB:.1f} GiB of free memory needed for --size-mib {args.size_mib}, "
            f"{machine.mem_available() / GiB:.1f} GiB available"
        )
    started_at = dt.datetime.now(dt.UTC)
    before = machine.describe()
    try:
        big = workdir / "big.bin"
        write_big_file(big, size)
        settings = loads.Settings(args.duration, big, size, args.small_count, workdir)
        res = report.Results(md5_mb_s=machine.md5_speed(min(size, 256 * MiB)))
        extra = {
            "S3PROXY_LOG_LEVEL": args.log_level,
            "S3PROXY_UPSTREAM_CHECKSUM": args.upstream_checksum,
            "S3PROXY_WORKERS": args.workers,
        }
        with Stack(workdir, REPO / ".venv" / "bench-cache", extra) as stack:
            print(f"servers up in {workdir}; warming up ...", flush=True)
            setup_objects(stack, settings)
            measure(stack, settings, res, args.repeat, args.only)
            profile_lines = profiles.profile(stack, settings, args.profile) if args.profile else []
        after = machine.describe()
        text = render(args, res, before, after, started_at, profile_lines)
    except Exception:
        args.keep = True  # the servers' logs tell what happened
        raise
    finally:
        if args.keep:
            for large in workdir.glob("*.bin"):
                large.unlink()
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return text


def render(
    args: argparse.Namespace,
    res: report.Results,
    before: dict[str, str],
    after: dict[str, str],
    started_at: dt.datetime,
    profile_lines: list[str],
) -> str:
    mode = "quick" if args.quick else "full"
    lines = [
        f"### s3proxy benchmark, {started_at:%Y-%m-%d %H:%M} UTC ({mode} run)",
        "",
        f"- machine: {before['cpu']}; {before['memory']}; kernel {before['kernel']}",
        f"- load average (1, 5, 15 min) at start {before['load']}, at end {after['load']}; "
        f"1-min load after each run: {report.load_range(res.load)} (other processes share these "
        "cores: the load is the number of them wanting a core)",
        f"- {machine.versions()}",
        f"- {args.repeat} run(s) of each workload, paths alternated; medians. wrk: 2 threads, "
        f"{args.duration:g} s per run. Large object {args.size_mib} MiB. s3proxy: "
        f"S3PROXY_UPSTREAM_CHECKSUM={args.upstream_checksum}, S3PROXY_LOG_LEVEL="
        f"{args.log_level}, S3PROXY_WORKERS={args.workers}, other settings default. MB/s are "
        "10^6 bytes per second.",
        "",
        *report.figures_table(res),
        "",
        "Resources per workload (medians; CPU seconds over the whole run of the workload, peak "
        "RSS is the largest VmHWM of any one process, reset before each run):",
        "",
        *report.resources_table(res),
        "",
        *report.other_lines(res),
        "",
        *report.targets_table(res, report.ISSUE_22),
        "",
        *report.targets_table(res, report.ISSUE_10),
        *profile_lines,
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _interrupt)
    os.environ.update(clean_env())  # no AWS_CA_BUNDLE and the like for the clients
    for name in [k for k in os.environ if k.startswith(("AWS_", "BOTO_", "VAULT_", "S3PROXY_"))]:
        del os.environ[name]
    try:
        text = run(args)
    except KeyboardInterrupt as stop:
        print(f"interrupted ({stop or 'Ctrl-C'}); every server was stopped", file=sys.stderr)
        return 130
    print(text)
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
