"""The workloads: each runs one load against one base URL (direct, nginx or s3proxy) in a
child process with a time limit, and returns its figures by name."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from s3proxy.devstack import clean_env

BENCH_DIR = Path(__file__).resolve().parent
WRK_SCRIPT = BENCH_DIR / "wrk" / "load.lua"
BOTO_CLIENT = BENCH_DIR / "boto_client.py"
MB = 1_000_000  # throughput is in MB/s of 10^6 bytes, as the GB/s are

Figures = dict[str, float]


@dataclass(frozen=True)
class Settings:
    duration: float  # seconds of each wrk run
    big_file: Path  # the large object's contents
    big_size: int
    small_count: int  # boto3 PUT+GET pairs
    scratch: Path  # where download_file writes (tmpfs)


@dataclass(frozen=True)
class Workload:
    name: str
    run: Callable[[str, str], Figures]  # (base URL, path name) -> figures
    higher_is_better: dict[str, bool]
    tls: bool = False  # through the TLS listeners of nginx and s3proxy (the upstream has none)


def _json_line(output: str, what: str) -> dict[str, float]:
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            found: dict[str, float] = json.loads(line.removeprefix("BENCH_JSON "))
            return found
    raise RuntimeError(f"{what} printed no result:\n{output[-2000:]}")


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def small_key(path: str) -> str:
    return "small-enc" if path == "s3proxy" else "small-plain"


def big_key(path: str) -> str:
    return "big-enc" if path == "s3proxy" else "big-plain"


def wrk(
    base: str, method: str, key: str, connections: int, duration: float, close: bool = False
) -> Figures:
    """``close``: a new connection (over TLS: a full handshake) for every request."""
    wrk_bin = shutil.which("wrk") or "/usr/bin/wrk"
    cmd = [
        wrk_bin,
        "-t2",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "5s",
        "-s",
        str(WRK_SCRIPT),
        f"{base}/bench/{key}",
    ]
    env = clean_env({"BENCH_METHOD": method, "BENCH_BODY_BYTES": "4096"})
    if close:
        env["BENCH_CLOSE"] = "1"
    found = _json_line(_run(cmd, duration + 60, env), "wrk")
    errors = sum(found[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {
        "req/s": found["requests"] / (found["duration_us"] / 1e6),
        "p50 ms": found["p50_us"] / 1000,
        "p99 ms": found["p99_us"] / 1000,
        "errors": errors,
        "requests": found["requests"],
    }


def curl(base: str, method: str, key: str, settings: Settings) -> Figures:
    cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "--max-time"]
    cmd += ["600", "-H", "Expect:"]  # no 100-continue round trip
    if method == "PUT":
        cmd += ["-T", str(settings.big_file)]
    cmd.append(f"{base}/bench/{key}")
    status, seconds = _run(cmd, 660).split()
    if status != "200":
        raise RuntimeError(f"curl {method} {base}/bench/{key}: HTTP {status}")
    return {"MB/s": settings.big_size / float(seconds) / MB}


def boto(command: str, base: str, name: str, arg: str, timeout: float = 900) -> dict[str, float]:
    cmd = [sys.executable, str(BOTO_CLIENT), command, base, name, arg]
    return _json_line(_run(cmd, timeout, clean_env()), f"boto3 {command}")


def workloads(settings: Settings) -> list[Workload]:
    rate = {"req/s": True, "p50 ms": False, "p99 ms": False, "errors": False}
    big = f"{settings.big_size / 2**20:.0f} MiB"
    if settings.big_size >= 2**30:
        big = f"{settings.big_size / 2**30:.0f} GiB"
    found = []
    for method in ("GET", "PUT"):
        for conns in (64, 256):

            def run(base: str, path: str, method: str = method, conns: int = conns) -> Figures:
                key = small_key(path) if method == "GET" else "sink/put-4k"
                return wrk(base, method, key, conns, settings.duration)

            found.append(Workload(f"wrk {method} 4 KiB, {conns} conn", run, rate))

    # What TLS costs (docs/performance.md, The TLS listener): over keep-alive connections
    # (record encryption) against the plain 64-connection GET, and with a new connection for
    # every request (Connection: close; over TLS a full handshake) against the same in plain
    # HTTP.
    def get(base: str, path: str, close: bool = False) -> Figures:
        return wrk(base, "GET", small_key(path), 64, settings.duration, close=close)

    def get_new_connections(base: str, path: str) -> Figures:
        return get(base, path, close=True)

    found += [
        Workload("wrk GET 4 KiB, 64 conn, TLS keep-alive", get, rate, tls=True),
        Workload("wrk GET 4 KiB, 64 conn, new connection each", get_new_connections, rate),
        Workload("wrk GET 4 KiB, 64 conn, TLS handshake each", get_new_connections, rate, tls=True),
    ]

    def curl_put(base: str, path: str) -> Figures:
        return curl(base, "PUT", "sink/put-big", settings)

    def curl_get(base: str, path: str) -> Figures:
        return curl(base, "GET", big_key(path), settings)

    def boto_up(base: str, path: str) -> Figures:
        found = boto("upload", base, f"mp-{path}", str(settings.big_file))
        return {"MB/s": found["bytes"] / found["seconds"] / MB}

    def boto_down(base: str, path: str) -> Figures:
        target = settings.scratch / f"download-{path}"
        found = boto("download", base, f"mp-{path}", str(target))
        return {"MB/s": found["bytes"] / found["seconds"] / MB}

    def boto_small(base: str, path: str) -> Figures:
        found = boto("small", base, f"b3small-{path}", str(settings.small_count))
        figures = {
            "req/s": found["requests"] / found["seconds"],
            "errors": found["errors"],
            "requests": found["requests"],
        }
        figures.update(
            {
                k.replace("_ms", " ms").replace("_", " "): found[k]
                for k in found
                if k.endswith("_ms")
            }
        )
        return figures

    throughput = {"MB/s": True}
    small_rate = {
        "req/s": True,
        "errors": False,
        **{f"{op} {q} ms": False for op in ("put", "get") for q in ("p50", "p99")},
    }
    found += [
        Workload(f"curl PUT {big}", curl_put, throughput),
        Workload(f"curl GET {big}", curl_get, throughput),
        Workload(f"boto3 upload_file {big}", boto_up, throughput),
        Workload(f"boto3 download_file {big}", boto_down, throughput),
        Workload("boto3 4 KiB PUT+GET, 16 threads", boto_small, small_rate),
    ]
    return found
