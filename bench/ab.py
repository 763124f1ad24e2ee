"""A/B of two s3proxy trees side by side (docs/performance.md, Comparing two versions).

    .venv/bin/python bench/ab.py OLD_TREE NEW_TREE [--rounds 8] [--duration 3]

Starts on 127.0.0.1 the benchmark's in-memory upstream and OpenBao once, and one ``s3proxy
serve`` (one worker) from each tree in front of them (each tree's ``s3proxy`` package first on
PYTHONPATH). Then, round after round, runs wrk (64 connections, unsigned 4 KiB GET and PUT)
against each proxy in alternating order and reads each proxy process's CPU time from /proc
before and after: the CPU µs per request of both versions, measured minutes apart on the same
machine state, so the drift of a shared machine falls on both alike. Prints the per-round
figures and their medians, and the ratio new / old.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import loads
from stack import BUCKET, UPSTREAM_KEY, build_upstream, http_status, spawn, wait_listening

from s3proxy.devstack import S3Server, clean_env, free_port, start_proxy_process, start_vault

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WORKLOADS = (("GET", "small-enc"), ("PUT", "sink/put-4k"))


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("old", type=Path, help="the tree measured as A (a checkout or worktree)")
    p.add_argument("new", type=Path, help="the tree measured as B")
    p.add_argument("--rounds", type=int, default=8, help="rounds of every workload (8)")
    p.add_argument("--duration", type=float, default=3.0, help="seconds of each wrk run (3)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    p.add_argument(
        "--large-mib",
        type=int,
        default=0,
        help="also a curl PUT and GET of an object this large, every round (MB/s, CPU s)",
    )
    p.add_argument("--no-small", action="store_true", help="without the 4 KiB wrk loads")
    return p.parse_args(argv)


def measure(port: int, pid: int, method: str, key: str, args: argparse.Namespace) -> float:
    """CPU µs of the proxy process per request of one wrk run."""
    before = cpu_seconds(pid)
    found = loads.wrk(f"http://127.0.0.1:{port}", method, key, args.connections, args.duration)
    used = cpu_seconds(pid) - before
    if found["errors"] or not found["requests"]:
        raise RuntimeError(f"wrk {method} on port {port}: {found}")
    return used / found["requests"] * 1e6


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    with tempfile.TemporaryDirectory(prefix="s3proxy-ab-") as tmp:
        work = Path(tmp)
        binary = build_upstream(REPO / ".venv" / "bench-cache")
        port = free_port()
        upstream = spawn([str(binary), "-listen", f"127.0.0.1:{port}"], clean_env(), work / "u")
        vault = None
        started = [upstream]
        try:
            wait_listening(upstream, port, "bench upstream")
            s3 = S3Server(
                upstream, f"http://127.0.0.1:{port}", UPSTREAM_KEY, UPSTREAM_KEY, "us-east-1"
            )
            vault = start_vault(work)
            proxies: dict[str, tuple[int, int]] = {}
            for name, tree in trees.items():
                # PYTHONSAFEPATH: ``python -m s3proxy`` would put the working directory (the
                # tree ab.py runs from) before PYTHONPATH, and both proxies would run its code
                extra = {"PYTHONPATH": str(tree), "PYTHONSAFEPATH": "1", "S3PROXY_WORKERS": "1"}
                extra |= {"S3PROXY_UPSTREAM_CHECKSUM": "crc32", "S3PROXY_LOG_LEVEL": "INFO"}
                process, proxy_port = start_proxy_process(work, vault, s3, extra)
                started.append(process)
                proxies[name] = (proxy_port, process.proc.pid)
                # each version reads an object it wrote (in the format it writes)
                key = _own(WORKLOADS[0][1], name)
                status = http_status(proxy_port, "PUT", f"/{BUCKET}/{key}", os.urandom(4096))
                if status != 200:
                    raise RuntimeError(f"PUT through {name}: HTTP {status}")
            if not args.no_small:
                run(proxies, args)
            if args.large_mib:
                run_large(proxies, args, work)
        finally:
            for process in reversed(started):
                process.stop()
            if vault is not None:
                vault.stop()


def run(proxies: dict[str, tuple[int, int]], args: argparse.Namespace) -> None:
    figures: dict[tuple[str, str], list[float]] = {}
    for name, (port, pid) in proxies.items():  # warm: connections, keys, layouts
        for method, key in WORKLOADS:
            warm = argparse.Namespace(connections=16, duration=1)
            measure(port, pid, method, _own(key, name) if method == "GET" else key, warm)
    for r in range(args.rounds):
        order = list(proxies) if r % 2 == 0 else list(reversed(proxies))
        for method, key in WORKLOADS:
            row = []
            for name in order:
                port, pid = proxies[name]
                value = measure(
                    port, pid, method, _own(key, name) if method == "GET" else key, args
                )
                figures.setdefault((method, name), []).append(value)
                row.append(f"{name} {value:,.0f}")
            print(f"round {r + 1} {method}: " + ", ".join(row), flush=True)
    print()
    print("| 4 KiB, CPU µs per request | old (median) | new (median) | new / old |")
    print("|---|---:|---:|---:|")
    for method, _ in WORKLOADS:
        old = statistics.median(figures[(method, "old")])
        new = statistics.median(figures[(method, "new")])
        print(
            f"| wrk {method} {args.connections} conn | {old:,.0f} | {new:,.0f} | {new / old:.2f} |"
        )


def run_large(proxies: dict[str, tuple[int, int]], args: argparse.Namespace, work: Path) -> None:
    """curl PUT and GET of ``--large-mib`` MiB through each version, alternating: MB/s and the
    proxy's CPU seconds per GiB."""
    size = args.large_mib * 2**20
    big = work / "big.bin"
    with big.open("wb") as out:
        for _ in range(args.large_mib):
            out.write(os.urandom(2**20))
    settings = loads.Settings(args.duration, big, size, 0, work)
    figures: dict[tuple[str, str, str], list[float]] = {}
    for r in range(args.rounds):
        order = list(proxies) if r % 2 == 0 else list(reversed(proxies))
        for method in ("PUT", "GET"):
            row = []
            for name in order:
                port, pid = proxies[name]
                before = cpu_seconds(pid)
                found = loads.curl(f"http://127.0.0.1:{port}", method, f"large-{name}", settings)
                cpu = (cpu_seconds(pid) - before) / (size / 2**30)
                figures.setdefault((method, name, "MB/s"), []).append(found["MB/s"])
                figures.setdefault((method, name, "CPU s"), []).append(cpu)
                row.append(f"{name} {found['MB/s']:,.0f} MB/s {cpu:.2f} CPU s/GiB")
            print(f"round {r + 1} {method} {args.large_mib} MiB: " + ", ".join(row), flush=True)
    print()
    print(f"| {args.large_mib} MiB (medians) | old | new | new / old |")
    print("|---|---:|---:|---:|")
    for method in ("PUT", "GET"):
        for figure in ("MB/s", "CPU s"):
            old = statistics.median(figures[(method, "old", figure)])
            new = statistics.median(figures[(method, "new", figure)])
            unit = " per GiB" if figure == "CPU s" else ""
            print(f"| curl {method}, {figure}{unit} | {old:,.2f} | {new:,.2f} | {new / old:.2f} |")


def _own(key: str, name: str) -> str:
    """The object one version reads: its own (an older version may not read a newer format)."""
    return f"{key}-{name}"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main(sys.argv[1:])
