"""Where a 4 KiB request's CPU goes: the per-stage budget of issue 22 (docs/performance.md,
*The budget of a 4 KiB request*).

    .venv/bin/python bench/budget.py [--duration 10] [--rate 400] [--output FILE]

Starts the benchmark's stack (bench/stack.py: the in-memory upstream, OpenBao, s3proxy with one
worker), then for unsigned 4 KiB GETs and PUTs (wrk, 64 connections): the proxy process's CPU
µs per request from /proc, and py-spy's samples of it over the same run. Each sample is given to
a stage by its innermost frame that belongs to one (:data:`STAGES`; frames of asyncio, the
standard library's plumbing and shared helpers pass the sample on to their caller), and each
stage's share of the samples times the CPU per request is its µs. What no stage claims (the
event loop, socket reads it runs itself) is shown as its own row.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import loads
import profiles
from procstats import Meter
from run import setup_objects, write_big_file
from stack import Stack

REPO = Path(__file__).resolve().parent.parent
LOOP = "event loop, socket reads (asyncio)"

# (stage, file path prefixes, function names or "" for any) — the first that matches a frame
# claims the sample. Paths are as bench/profiles.py shortens them.
STAGES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("classify (target, operation)", ("s3proxy/core/request.py",), ()),
    ("classify (target, operation)", ("s3proxy/server/app.py",), ("Proxy._classify",)),
    ("access checks (Host, Origin, limits)", ("s3proxy/core/access.py",), ()),
    (
        "access checks (Host, Origin, limits)",
        ("s3proxy/server/app.py",),
        ("Proxy._refuse_foreign", "Proxy._answer_early", "Proxy._authenticate"),
    ),
    ("access checks (Host, Origin, limits)", ("s3proxy/server/bodies.py",), ()),
    (
        "header rules",
        (
            "s3proxy/core/headers.py",
            "s3proxy/core/conditions.py",
            "s3proxy/core/etags.py",
            "s3proxy/server/readrules.py",
        ),
        (),
    ),
    ("key lookup", ("s3proxy/keys/",), ()),
    ("cipher (AES-GCM, format)", ("s3proxy/core/format.py", "cryptography/"), ()),
    ("checksums and MD5", ("s3proxy/core/checksums.py", "s3proxy/core/crc.py"), ()),
    ("signing", ("awscrt/auth.py", "botocore/"), ()),
    ("signing", ("s3proxy/upstream/signer.py",), ()),
    ("signing", ("s3proxy/upstream/client.py",), ("sign", "Signing.of")),
    ("access log", ("s3proxy/telemetry/accesslog.py", "s3proxy/telemetry/logs.py"), ()),
    ("access log", ("logging/", "json/"), ()),
    ("metrics", ("prometheus_client/", "s3proxy/telemetry/metrics.py"), ()),
    (
        "read and write plans (layout, object facts)",
        (
            "s3proxy/core/readplan.py",
            "s3proxy/core/layout.py",
            "s3proxy/core/objectinfo.py",
            "s3proxy/core/footer.py",
            "s3proxy/store/",
        ),
        (),
    ),
    (
        "upstream send and receive",
        (
            "aiohttp/client",
            "aiohttp/connector.py",
            "aiohttp/tcp_helpers.py",
            "s3proxy/upstream/",
            "httptools/",
        ),
        (),
    ),
    (
        "response (status, headers, body writes)",
        ("aiohttp/web_response.py", "aiohttp/http_writer.py"),
        (),
    ),
    (
        "HTTP server (parse, dispatch)",
        (
            "aiohttp/web_protocol.py",
            "aiohttp/web_request.py",
            "aiohttp/web_app.py",
            "aiohttp/web_middlewares.py",
            "aiohttp/web_urldispatcher.py",
            "aiohttp/web_server.py",
            "aiohttp/http_parser.py",
            "aiohttp/base_protocol.py",
        ),
        (),
    ),
    (LOOP, ("s3proxy/workers.py", "s3proxy/serve.py"), ()),  # (they run the loop)
    ("proxy handlers (the rest of s3proxy)", ("s3proxy/",), ()),
]


def stage_of(frames: list[str]) -> str:
    """The stage of one sample: its innermost frame (``frames`` run outermost first) that a
    rule of :data:`STAGES` claims; :data:`LOOP` when none does."""
    for frame in reversed(frames):
        name, _, path = frame.rpartition(" (")
        path = path.rstrip(")")
        for stage, prefixes, functions in STAGES:
            if path.startswith(prefixes) and (
                not functions or any(name == f or name.endswith("." + f) for f in functions)
            ):
                return stage
    return LOOP


def shares(raw: Path) -> Counter[str]:
    """Busy samples per stage (waiting in epoll or a thread pool left out)."""
    found: Counter[str] = Counter()
    for frames, count in profiles.read(raw):
        if frames and frames[-1] not in profiles.WAITING:
            found[stage_of(frames)] += count
    return found


def measure(stack: Stack, method: str, key: str, args: argparse.Namespace) -> tuple[float, Path]:
    """CPU µs per request of one wrk run of ``method``, and the py-spy samples taken over it."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    raw = args.workdir / f"{method.lower()}-4k.txt"
    cmd = [spy, "record", "--pid", str(stack.pids["s3proxy"]), "--format", "raw", "--nonblocking"]
    cmd += ["--rate", str(args.rate), "--output", str(raw)]
    spy_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # py-spy attaches
        meter = Meter(stack.pids["s3proxy"])
        meter.start()
        figures = loads.wrk(stack.url("s3proxy"), method, key, 64, args.duration)
        used = meter.stop()
    finally:
        spy_proc.send_signal(signal.SIGINT)
        spy_proc.wait(60)
    if figures["errors"] or not figures["requests"]:
        raise RuntimeError(f"wrk {method}: {figures}")
    return used.cpu_s / figures["requests"] * 1e6, raw


def table(results: dict[str, tuple[float, Counter[str]]]) -> list[str]:
    methods = list(results)
    order = [stage for stage, _, _ in STAGES] + [LOOP]
    stages = list(dict.fromkeys(order))
    head = " | ".join(f"4 KiB {m}, µs" for m in methods)
    lines = [f"| stage | {head} |", "|---|" + "---:|" * len(methods)]
    for stage in stages:
        cells = []
        for method in methods:
            per_request, found = results[method]
            total = sum(found.values()) or 1
            cells.append(f"{per_request * found[stage] / total:.0f}")
        lines.append(f"| {stage} | {' | '.join(cells)} |")
    totals = " | ".join(f"**{results[m][0]:.0f}**" for m in methods)
    lines.append(f"| **CPU per request (measured, /proc)** | {totals} |")
    samples = " | ".join(str(sum(results[m][1].values())) for m in methods)
    lines.append(f"| (py-spy samples) | {samples} |")
    return lines


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0, help="seconds of each wrk run (10)")
    p.add_argument("--rate", type=int, default=400, help="py-spy samples per second (400)")
    p.add_argument("--output", type=Path, help="also write the table here")
    p.add_argument("--keep", action="store_true", help="keep py-spy's samples (printed: where)")
    args = p.parse_args(argv)
    args.workdir = Path(tempfile.mkdtemp(prefix="s3proxy-budget-"))
    big = args.workdir / "big.bin"
    write_big_file(big, 1024 * 1024)
    settings = loads.Settings(1.0, big, 1024 * 1024, 10, args.workdir)
    extra = {"S3PROXY_LOG_LEVEL": "INFO", "S3PROXY_WORKERS": "1"}
    results: dict[str, tuple[float, Counter[str]]] = {}
    with Stack(args.workdir, REPO / ".venv" / "bench-cache", extra) as stack:
        setup_objects(stack, settings)
        for method, key in (("GET", "small-enc"), ("PUT", "sink/put-4k")):
            per_request, raw = measure(stack, method, key, args)
            results[method] = (per_request, shares(raw))
    text = "\n".join(table(results))
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    if args.keep:
        print(f"py-spy's samples: {args.workdir}/*-4k.txt (python bench/profiles.py FILE)")
    else:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
