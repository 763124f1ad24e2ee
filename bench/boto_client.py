"""The boto3 workloads of the benchmark, run in a process of their own by bench/run.py (so the
client's CPU is not the runner's); prints one JSON line.

    boto_client.py upload   ENDPOINT KEY FILE        upload_file, 8 MiB parts, 10 threads
    boto_client.py download ENDPOINT KEY FILE        download_file into FILE (then removed)
    boto_client.py small    ENDPOINT PREFIX COUNT    COUNT times PUT then GET of 4 KiB, 16 threads
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

BUCKET = "bench"
MiB = 1024 * 1024
TRANSFER = TransferConfig(
    multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=10
)
SMALL_THREADS = 16
SMALL_SIZE = 4096


def client(endpoint: str) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            max_pool_connections=SMALL_THREADS + 4,
        ),
    )


def upload(endpoint: str, key: str, path: str) -> dict[str, float]:
    s3 = client(endpoint)
    started = time.perf_counter()
    s3.upload_file(path, BUCKET, key, Config=TRANSFER)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": os.path.getsize(path)}


def download(endpoint: str, key: str, path: str) -> dict[str, float]:
    s3 = client(endpoint)
    try:
        started = time.perf_counter()
        s3.download_file(BUCKET, key, path, Config=TRANSFER)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "bytes": os.path.getsize(path)}
    finally:
        if os.path.exists(path):
            os.remove(path)


def small(endpoint: str, prefix: str, count: int) -> dict[str, float]:
    s3 = client(endpoint)
    body = os.urandom(SMALL_SIZE)
    puts: list[float] = []
    gets: list[float] = []
    errors = [0]

    def one(i: int) -> None:
        key = f"{prefix}/{i % 256}"
        try:
            t = time.perf_counter()
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            puts.append(time.perf_counter() - t)
            t = time.perf_counter()
            got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            gets.append(time.perf_counter() - t)
            if len(got) != SMALL_SIZE:
                errors[0] += 1
        except Exception:
            errors[0] += 1

    one(0)  # the client's connection pool and endpoint resolution, before the clock
    puts.clear()
    gets.clear()
    started = time.perf_counter()
    with ThreadPoolExecutor(SMALL_THREADS) as pool:
        list(pool.map(one, range(count)))
    seconds = time.perf_counter() - started

    def pct(xs: list[float], q: int) -> float:
        return statistics.quantiles(xs, n=100)[q - 1] * 1000 if len(xs) > 1 else float("nan")

    return {
        "seconds": seconds,
        "requests": len(puts) + len(gets),
        "errors": errors[0],
        "put_p50_ms": pct(puts, 50),
        "put_p99_ms": pct(puts, 99),
        "get_p50_ms": pct(gets, 50),
        "get_p99_ms": pct(gets, 99),
    }


def main(argv: list[str]) -> None:
    command, endpoint, name, arg = argv
    if command == "upload":
        result = upload(endpoint, name, arg)
    elif command == "download":
        result = download(endpoint, name, arg)
    elif command == "small":
        result = small(endpoint, name, int(arg))
    else:
        raise SystemExit(f"unknown command {command}")
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
