"""Listings and HEADs against a real Ceph RADOS Gateway (issue 21; `make bench`, second step).

Starts on 127.0.0.1 a throwaway RGW (s3proxy.devrgw), an OpenBao dev server and a redis-server;
writes ``--objects`` small objects through a first proxy (concurrently), then, side by side:

- ListObjectsV2, 1,000 keys a page as boto3's paginator asks, (a) directly against RGW,
  (b) through a fresh proxy with nothing cached (an empty shared-cache database), (c) through a
  fresh proxy whose shared cache the writing proxy filled, (d) through that proxy again (its own
  caches warm); (a), (c) and (d) ``--repeat`` times in turn, (c) and (d) each time through
  another fresh proxy, each row its run of median wall time (a single listing's time varies by
  a tenth or more from run to run here);
- ``--heads`` HEADs, ``--concurrency`` at a time, directly and through a fresh proxy.

Each row: wall time, ratio to direct, upstream requests (from the proxy's /metrics) per object,
Vault calls (from /metrics); every listing and HEAD through the proxy must report the plaintext
size and ETag written (else the run fails). Prints a markdown table and the issue's targets.

    .venv/bin/python bench/listing.py [--objects 10000] [--heads 1000] [--output FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

import machine
import redis
from procstats import cpu_seconds
from procstats import family as process_family
from prometheus_client.parser import text_string_to_metric_families

from s3proxy.devrgw import RgwServer, available, start_rgw
from s3proxy.devstack import (
    Exited,
    Process,
    Vault,
    boto3_client,
    clean_env,
    free_port,
    start_proxy_process,
    start_vault,
    wait_for,
)

BUCKET = "listing"
PAGE = 1000  # boto3's paginator asks for up to 1,000 keys a page (S3's maximum)
MAX_SIZE = 4096  # the objects' plaintext sizes: 0 to 4 KiB
UPSTREAM_COUNT = "s3proxy_upstream_request_duration_seconds_count"
VAULT_COUNT = "s3proxy_vault_request_duration_seconds_count"
NOT_KEYS = ("check", "login")  # Vault calls that are no key operation
WRITER_DB, COLD_DB, HEAD_DB = 0, 1, 2  # databases of the one redis-server (empty but WRITER_DB)

X = "\N{MULTIPLICATION SIGN}"
NONE = "\N{EN DASH}"
Facts = dict[str, tuple[int, str]]  # key -> (plaintext size, ETag as S3 shows it, quoted)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--objects", type=int, default=10_000, help="objects listed (10000)")
    p.add_argument("--heads", type=int, default=1000, help="objects HEADed (1000)")
    p.add_argument("--concurrency", type=int, default=16, help="HEADs at a time (16)")
    p.add_argument("--writers", type=int, default=32, help="PUTs at a time while setting up (32)")
    p.add_argument("--workers", default="auto", help="S3PROXY_WORKERS of every proxy (auto)")
    p.add_argument(
        "--repeat", type=int, default=3, help="runs of each listing but the cold one (medians; 3)"
    )
    p.add_argument("--output", type=Path, help="also write the markdown report here")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = p.parse_args(argv)
    args.heads = min(args.heads, args.objects)
    return args


# ---- servers ------------------------------------------------------------------------------------


@dataclass
class Proxy:
    process: Process
    port: int
    admin: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def counters(self) -> Counters:
        """Upstream requests sent and Vault calls made so far, by kind (all workers)."""
        url = f"http://127.0.0.1:{self.admin}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        upstream, vault = 0.0, Counter[str]()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == UPSTREAM_COUNT:
                    upstream += sample.value
                elif sample.name == VAULT_COUNT:
                    vault[sample.labels["kind"]] += int(sample.value)
        return Counters(upstream, vault)


@dataclass
class Counters:
    upstream: float
    vault: Counter[str]  # Vault calls by kind (hmac, decrypt, ..., check: reachability)

    def __sub__(self, before: Counters) -> Counters:
        return Counters(self.upstream - before.upstream, self.vault - before.vault)


def start_redis(workdir: Path) -> tuple[Process, int]:
    """A redis-server on 127.0.0.1 without persistence, once it answers PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: run `make bench` (or make system-deps)")
    port = free_port()
    log_path = workdir / "redis.log"
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir)]
    args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    process = Process(proc, log_path)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def answers() -> bool:
        if proc.poll() is not None:
            raise Exited(f"redis-server exited: {process.log_text()[-500:]}")
        return bool(client.ping())

    try:
        wait_for(answers, "redis-server", timeout=15)
    except BaseException:
        process.stop()
        raise
    finally:
        client.close()
    return process, port


@dataclass
class Peers:
    """RGW, OpenBao and redis-server, and the proxies started in front of them."""

    workdir: Path
    workers: str
    rgw: RgwServer | None = None
    vault: Vault | None = None
    redis_port: int = 0
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def __enter__(self) -> Peers:
        try:
            if not available():
                raise SystemExit("Ceph is not installed: run `make bench` (or make system-deps)")
            self.rgw = start_rgw(self.workdir, memstore_bytes=1 << 30)
            self.stack.callback(self.rgw.stop)
            self.vault = start_vault(self.workdir)
            self.stack.callback(self.vault.stop)
            redis_process, self.redis_port = start_redis(self.workdir)
            self.stack.callback(redis_process.stop)
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def proxy(self, cache_db: int) -> Proxy:
        """A fresh ``s3proxy serve`` (default settings) whose shared cache is database
        ``cache_db`` of the redis-server."""
        assert self.rgw is not None and self.vault is not None
        admin = free_port()
        extra = {
            "S3PROXY_ADMIN_LISTEN": f"127.0.0.1:{admin}",
            "S3PROXY_WORKERS": self.workers,
            "S3PROXY_METADATA_CACHE_URL": f"redis://127.0.0.1:{self.redis_port}/{cache_db}",
        }
        process, port = start_proxy_process(self.workdir, self.vault, self.rgw, extra)
        self.stack.callback(process.stop)
        proxy = Proxy(process, port, admin)
        wait_for(lambda: proxy.counters() is not None, "the proxy's /metrics", timeout=30)
        return proxy

    def store_pids(self) -> list[int]:
        """The Ceph daemons' processes (and their children): the store's CPU."""
        assert self.rgw is not None
        return [pid for daemon in self.rgw.daemons for pid in process_family(daemon.pid)]

    def direct_client(self, pool: int) -> Any:
        assert self.rgw is not None
        return _client(self.rgw.endpoint, self.rgw.access_key, self.rgw.secret_key, pool)


def _client(endpoint: str, access_key: str, secret_key: str, pool: int) -> Any:
    from botocore.config import Config

    config = Config(
        s3={"addressing_style": "path"},
        retries={"total_max_attempts": 1},
        max_pool_connections=pool,
        read_timeout=300,
    )
    return boto3_client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=config,
    )


def proxy_client(proxy: Proxy, pool: int) -> Any:
    """A workload's client: the proxy ignores its keys."""
    return _client(proxy.url, "AKIAWORKLOAD", "workload-secret", pool)


# ---- workloads ----------------------------------------------------------------------------------


def write_objects(client: Any, count: int, writers: int) -> Facts:
    """``count`` objects of 0 to 4 KiB, ``writers`` PUTs at a time; what each should list as."""
    rng = random.Random(21)
    bodies = {f"obj/{i:06d}": rng.randbytes(rng.randrange(MAX_SIZE + 1)) for i in range(count)}

    def put(item: tuple[str, bytes]) -> tuple[str, tuple[int, str]]:
        key, body = item
        etag = f'"{hashlib.md5(body).hexdigest()}"'
        answered = client.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"]
        if answered != etag:
            raise RuntimeError(f"PUT {key}: ETag {answered}, expected {etag}")
        return key, (len(body), etag)

    with ThreadPoolExecutor(writers) as pool:
        return dict(pool.map(put, bodies.items()))


def list_all(client: Any) -> tuple[Facts, int]:
    """Every object with its size and ETag, paged as boto3's paginator pages; and the pages."""
    found: Facts = {}
    pages = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=BUCKET, PaginationConfig={"PageSize": PAGE}):
        pages += 1
        for obj in page.get("Contents", []):
            found[obj["Key"]] = (obj["Size"], obj["ETag"])
    return found, pages


def head_all(client: Any, keys: list[str], concurrency: int, ends: bool = False) -> Facts:
    """HEAD each key, ``concurrency`` at a time; ``ends``: ask instead what the proxy asks for a
    HEAD, ``GET Range: bytes=-160`` (the store's own cost of the proxy's request)."""

    def head(key: str) -> tuple[str, tuple[int, str]]:
        if ends:
            got = client.get_object(Bucket=BUCKET, Key=key, Range=f"bytes=-{END}")
            got["Body"].read()
            return key, (int(got["ContentRange"].rpartition("/")[2]), got["ETag"])
        answer = client.head_object(Bucket=BUCKET, Key=key)
        return key, (answer["ContentLength"], answer["ETag"])

    with ThreadPoolExecutor(concurrency) as pool:
        return dict(pool.map(head, keys))


# ---- measuring ----------------------------------------------------------------------------------


@dataclass
class Row:
    workload: str
    path: str
    objects: int
    wall_s: float
    upstream: float  # upstream requests during the run
    vault: Counter[str] | None  # Vault calls during the run by kind (None: direct)
    mismatches: int  # objects whose size or ETag differs from what was written (or HEAD gave)
    store_cpu_s: float = 0.0  # CPU seconds of the Ceph daemons (the store) during the run
    proxy_cpu_s: float = 0.0  # CPU seconds of the proxy's processes during the run


QUICK_PATHS = ("direct", "s3proxy, fresh, shared cache warm", "s3proxy, warm (second listing)")


def median_row(runs: list[Row]) -> Row:
    """The run of median wall time (of an even count, the slower of the middle two), its
    mismatches the most of any run's."""
    ordered = sorted(runs, key=lambda row: row.wall_s)
    chosen = ordered[len(ordered) // 2]
    walls = ", ".join(f"{row.wall_s:.2f}" for row in runs)
    print(f"  {chosen.path}: median of {len(runs)} ({walls} s)", flush=True)
    return replace(chosen, mismatches=max(row.mismatches for row in runs))


def timed(
    run: Callable[[], tuple[Facts, int]], proxy: Proxy | None, store: list[int]
) -> tuple[Facts, float, Counters, tuple[float, float]]:
    """What ``run`` found, its wall time, the proxy's counters during it, and the CPU seconds
    the store's daemons (``store``: their pids) and the proxy used meanwhile."""
    proxy_pids = process_family(proxy.process.proc.pid) if proxy else []
    before = proxy.counters() if proxy else None
    cpu_before = cpu_seconds(store), cpu_seconds(proxy_pids)
    started = time.perf_counter()
    found, requests = run()
    wall = time.perf_counter() - started
    cpu = cpu_seconds(store) - cpu_before[0], cpu_seconds(proxy_pids) - cpu_before[1]
    if proxy is None or before is None:
        return found, wall, Counters(float(requests), Counter()), cpu
    return found, wall, proxy.counters() - before, cpu


def mismatches(found: Facts, expected: Facts) -> int:
    """Objects listed or answered otherwise than expected, missing or extra."""
    keys = found.keys() | expected.keys()
    return sum(1 for k in keys if found.get(k) != expected.get(k))


def missing(found: Facts, expected: Facts) -> int:
    """Directly, sizes and ETags are the ciphertext's: only the keys must be right."""
    return len(found.keys() ^ expected.keys())


def measure(peers: Peers, args: argparse.Namespace) -> tuple[list[Row], dict[str, float]]:
    writer = peers.proxy(WRITER_DB)
    setup_started = time.perf_counter()
    peers.direct_client(1).create_bucket(Bucket=BUCKET)
    written = write_objects(proxy_client(writer, args.writers), args.objects, args.writers)
    setup_s = time.perf_counter() - setup_started
    print(f"wrote {len(written)} objects through a proxy in {setup_s:.1f} s", flush=True)
    writer.process.stop()
    rows: list[Row] = []
    n = args.objects

    store = peers.store_pids()

    def listing(path: str, client: Any, proxy: Proxy | None) -> Row:
        found, wall, counted, cpu = timed(lambda: list_all(client), proxy, store)
        wrong = mismatches(found, written) if proxy else missing(found, written)
        vault = counted.vault if proxy else None
        print(f"  list via {path}: {wall:.2f} s", flush=True)
        return Row("ListObjectsV2", path, n, wall, counted.upstream, vault, wrong, *cpu)

    # The quick listings --repeat times, in turn (each time through a fresh proxy of the
    # writer's shared cache): each row is its run of median wall time.
    quick: dict[str, list[Row]] = {path: [] for path in QUICK_PATHS}
    for _ in range(args.repeat):
        quick["direct"].append(listing("direct", peers.direct_client(1), None))
        shared = peers.proxy(WRITER_DB)
        shared_client = proxy_client(shared, 1)
        for path in QUICK_PATHS[1:]:
            quick[path].append(listing(path, shared_client, shared))
        shared.process.stop()
    rows.append(median_row(quick["direct"]))
    cold = peers.proxy(COLD_DB)
    rows.append(listing("s3proxy, fresh, nothing cached", proxy_client(cold, 1), cold))
    cold.process.stop()
    rows += [median_row(quick[path]) for path in QUICK_PATHS[1:]]

    keys = sorted(written)[:: max(1, n // args.heads)][: args.heads]
    expected = {k: written[k] for k in keys}

    def heads(path: str, client: Any, proxy: Proxy | None, ends: bool = False) -> None:
        def run() -> tuple[Facts, int]:
            return head_all(client, keys, args.concurrency, ends), len(keys)

        found, wall, counted, cpu = timed(run, proxy, store)
        name = f"HEAD, {args.concurrency} at a time"
        wrong = mismatches(found, expected) if proxy else missing(found, expected)
        vault = counted.vault if proxy else None
        rows.append(Row(name, path, len(keys), wall, counted.upstream, vault, wrong, *cpu))
        print(f"  HEAD via {path}: {wall:.2f} s", flush=True)

    heads("direct", peers.direct_client(args.concurrency), None)
    heads(ENDS_PATH, peers.direct_client(args.concurrency), None, ends=True)
    head_proxy = peers.proxy(HEAD_DB)
    heads("s3proxy, fresh, nothing cached", proxy_client(head_proxy, args.concurrency), head_proxy)
    head_proxy.process.stop()
    return rows, {"setup_s": setup_s}


# ---- the report ---------------------------------------------------------------------------------


END = 160  # the bytes the proxy asks for in a HEAD: a v3 stream's footer
ENDS_PATH = f"direct, GET bytes=-{END} instead (the proxy's request)"


def _direct(rows: list[Row], workload: str) -> Row:
    return next(r for r in rows if r.workload == workload and r.path == "direct")


def key_calls(vault: Counter[str]) -> int:
    """Vault calls for keys: not the periodic reachability checks (nor token logins)."""
    return sum(n for kind, n in vault.items() if kind not in NOT_KEYS)


def vault_cell(vault: Counter[str]) -> str:
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(vault.items()) if n)
    return f"{key_calls(vault)} ({kinds})" if kinds else "0"


def figures_table(rows: list[Row]) -> list[str]:
    lines = [
        f"| workload | path | objects | wall s | {X} direct | upstream requests | per object "
        "| Vault calls for keys (all, by kind) | size/ETag mismatches | store CPU s "
        "| proxy CPU s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        direct = _direct(rows, r.workload)
        vault = NONE if r.vault is None else vault_cell(r.vault)
        proxy_cpu = NONE if r.vault is None else f"{r.proxy_cpu_s:.2f}"
        lines.append(
            f"| {r.workload} | {r.path} | {r.objects:,} | {r.wall_s:.2f} | "
            f"{r.wall_s / direct.wall_s:.2f} | {r.upstream:,.0f} | {r.upstream / r.objects:.3f} | "
            f"{vault} | {r.mismatches} | {r.store_cpu_s:.2f} | {proxy_cpu} |"
        )
    return lines


@dataclass
class Target:
    name: str
    measured: float
    bound: float
    shown: str  # how the measured value and the bound read ("1.42x, at most 1.3x")


def targets(rows: list[Row]) -> list[Target]:
    found: list[Target] = []
    by_path = {(r.workload, r.path): r for r in rows}
    head = next((r for r in rows if r.workload.startswith("HEAD") and r.vault is not None), None)
    if head is not None:
        d = _direct(rows, head.workload)
        ratio, per = head.wall_s / d.wall_s, head.upstream / head.objects
        found.append(Target("HEAD cold: wall time", ratio, 1.3, f"{ratio:.2f}{X} direct, ≤ 1.3{X}"))
        found.append(
            Target("HEAD cold: upstream requests per object", per, 1.0, f"{per:.3f}, exactly 1")
        )
    d = _direct(rows, "ListObjectsV2")
    warm = by_path.get(("ListObjectsV2", "s3proxy, fresh, shared cache warm"))
    if warm is not None:
        ratio, up = warm.wall_s / d.wall_s, warm.upstream / d.upstream
        found.append(
            Target("listing, shared cache warm: wall", ratio, 1.2, f"{ratio:.2f}{X} ≤ 1.2{X}")
        )
        found.append(
            Target(
                "listing, shared cache warm: upstream requests",
                up,
                1.05,
                f"{warm.upstream:,.0f} = {up:.2f}{X} direct's {d.upstream:,.0f}, ≤ 1.05{X}",
            )
        )
    cold = by_path.get(("ListObjectsV2", "s3proxy, fresh, nothing cached"))
    if cold is not None:
        ratio = cold.wall_s / d.wall_s
        extra = (cold.upstream - d.upstream) / cold.objects
        found.append(
            Target(
                "listing cold: extra upstream requests per object", extra, 1.0, f"{extra:.3f} ≤ 1"
            )
        )
        found.append(Target("listing cold: wall", ratio, 3.0, f"{ratio:.2f}{X} direct, ≤ 3{X}"))
        vault = key_calls(cold.vault or Counter())
        found.append(Target("listing cold: Vault calls", vault, 10, f"{vault} ≤ 10"))
    return found


def verdict(t: Target) -> str:
    exact = "exactly" in t.shown
    met = abs(t.measured - t.bound) < 1e-9 if exact else t.measured <= t.bound + 1e-9
    if met:
        return "met"
    if t.bound == 0:
        return "missed"
    if t.measured >= 2 * t.bound:
        return f"missed: {t.measured / t.bound:.1f}{X} the bound"
    return f"missed by {abs(t.measured / t.bound - 1) * 100:.1f} %"


def store_bounds(rows: list[Row]) -> list[str]:
    """What the store's own CPU allows each proxied row on this machine's cores: its daemons'
    CPU seconds spread over every core is a floor on the wall time, whatever the proxy costs."""
    cores = os.cpu_count() or 1
    lines = []
    for r in rows:
        if r.vault is None:
            continue
        direct = _direct(rows, r.workload)
        floor = r.store_cpu_s / cores
        lines.append(
            f"- {r.workload}, {r.path}: the store used {r.store_cpu_s:.2f} CPU s and the proxy "
            f"{r.proxy_cpu_s:.2f}; on {cores} cores the store's alone take at least "
            f"{floor:.2f} s = {floor / direct.wall_s:.2f}{X} direct's wall time."
        )
    return lines


def targets_table(rows: list[Row]) -> list[str]:
    lines = ["| target (issue 21) | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t.name} | {t.shown} | {verdict(t)} |" for t in targets(rows)]
    return lines


def render(
    args: argparse.Namespace, rows: list[Row], setup: dict[str, float], before: dict[str, str]
) -> str:
    finished = dt.datetime.now(dt.UTC)
    bad = sum(r.mismatches for r in rows)
    return "\n".join(
        [
            f"### Listings and HEADs against RGW, {finished:%Y-%m-%d %H:%M} UTC",
            "",
            f"- machine: {before['cpu']}; {before['memory']}; load average {before['load']}",
            f"- {versions()}",
            f"- Ceph RGW (memstore) on loopback; {args.objects:,} objects of 0 to "
            f"{MAX_SIZE:,} bytes written through a proxy ({args.writers} at a time, "
            f"{setup['setup_s']:.1f} s); proxies with default settings, S3PROXY_WORKERS="
            f"{args.workers}, S3PROXY_METADATA_CACHE_URL set (the writer's redis database, or an "
            "empty one for the fresh proxies with nothing cached). Listings: boto3's paginator, "
            f"{PAGE:,} a page; HEADs: {args.heads:,} keys spread over the bucket, "
            f"{args.concurrency} at a time. Upstream requests of direct: the requests boto3 "
            "sent; through the proxy: its /metrics. Vault calls for keys leave out the proxy's "
            "periodic reachability checks (check), which the brackets count too.",
            f"- sizes and ETags through the proxy equal the plaintext written "
            f"(so listings equal HEADs): {'yes' if bad == 0 else f'NO, {bad} mismatches'}",
            "",
            *figures_table(rows),
            "",
            *targets_table(rows),
            "",
            *store_bounds(rows),
            "",
        ]
    )


def versions() -> str:
    def first_line(cmd: list[str]) -> str:
        with contextlib.suppress(Exception):
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (done.stdout + done.stderr).strip().splitlines()[0]
        return "?"

    commit = first_line(
        ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short", "HEAD"]
    )
    return (
        f"s3proxy {commit}, {first_line(['radosgw', '--version'])}, "
        f"{first_line(['redis-server', '--version'])}, Python {platform.python_version()}"
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace) -> tuple[str, int]:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    workdir = Path(tempfile.mkdtemp(prefix="s3proxy-listing-", dir=base))
    before = machine.describe()
    try:
        with Peers(workdir, args.workers) as peers:
            print(f"servers up in {workdir}", flush=True)
            rows, setup = measure(peers, args)
        text = render(args, rows, setup, before)
    except Exception:
        args.keep = True
        raise
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return text, sum(r.mismatches for r in rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _interrupt)
    os.environ.update(clean_env())
    for name in [k for k in os.environ if k.startswith(("AWS_", "BOTO_", "VAULT_", "S3PROXY_"))]:
        del os.environ[name]
    try:
        text, bad = run(args)
    except KeyboardInterrupt as stop:
        print(f"interrupted ({stop or 'Ctrl-C'}); every server was stopped", file=sys.stderr)
        return 130
    print(text)
    if args.output:
        args.output.write_text(text)
    if bad:
        print(f"{bad} sizes or ETags through the proxy differ from those written", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
