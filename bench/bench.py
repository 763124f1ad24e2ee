"""Benchmark: the format's raw speed, and end-to-end PUT/GET through the proxy versus straight
to the same moto server (so the proxy's own cost is the difference).

    .venv/bin/python bench/bench.py [--size-mib 64] [--small 200]

Starts its own OpenBao and moto on loopback, like the tests. Numbers depend on the machine;
moto itself is slow, so the end-to-end figures measure moto + proxy, not the proxy alone.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from s3proxy.core.format import StreamDecryptor, StreamEncryptor, parse_header
from s3proxy.core.sizes import HEADER_SIZE
from s3proxy.devstack import clean_env, free_port, peers, proxy_env, wait_for

MiB = 1024 * 1024


def bench_format(size: int) -> None:
    key = os.urandom(32)
    data = os.urandom(size)
    chunk = 256 * 1024
    t = time.perf_counter()
    enc = StreamEncryptor(key, "vault:v1:x", size)
    parts = [enc.header]
    for i in range(0, size, chunk):
        parts.append(enc.feed(data[i : i + chunk]))
    parts.append(enc.finish())
    stream = b"".join(parts)
    enc_s = time.perf_counter() - t
    t = time.perf_counter()
    dec = StreamDecryptor(parse_header(stream), key)
    out = []
    for i in range(HEADER_SIZE, len(stream), chunk):
        out.append(dec.feed(stream[i : i + chunk]))
    dec.finish()
    dec_s = time.perf_counter() - t
    assert b"".join(out) == data
    print(
        f"format: encrypt {size / MiB / enc_s:8.0f} MiB/s   decrypt {size / MiB / dec_s:8.0f} MiB/s"
    )


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_client(name: str, client: Any, bucket: str, size: int, small: int) -> None:
    data = os.urandom(size)
    put = _timed(lambda: client.put_object(Bucket=bucket, Key=f"{name}/big", Body=data))
    got: list[bytes] = []
    get = _timed(
        lambda: got.append(client.get_object(Bucket=bucket, Key=f"{name}/big")["Body"].read())
    )
    assert got[0] == data
    body = os.urandom(4096)
    puts, gets = [], []
    for i in range(small):
        puts.append(
            _timed(lambda i=i: client.put_object(Bucket=bucket, Key=f"{name}/s{i}", Body=body))
        )
    for i in range(small):
        gets.append(
            _timed(lambda i=i: client.get_object(Bucket=bucket, Key=f"{name}/s{i}")["Body"].read())
        )

    def ms(xs: list[float], q: float) -> float:
        return statistics.quantiles(xs, n=100)[int(q) - 1] * 1000

    print(
        f"{name:>7}: PUT {size / MiB / put:6.0f} MiB/s  GET {size / MiB / get:6.0f} MiB/s  "
        f"4KiB PUT p50 {ms(puts, 50):5.1f} ms p99 {ms(puts, 99):5.1f} ms  "
        f"GET p50 {ms(gets, 50):5.1f} ms p99 {ms(gets, 99):5.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--small", type=int, default=200)
    args = parser.parse_args()
    size = args.size_mib * MiB
    bench_format(size)
    workdir = Path(tempfile.mkdtemp(prefix="s3proxy-bench-"))
    with peers(workdir) as (vault, s3):
        s3.client().create_bucket(Bucket="bench")
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "s3proxy", "serve"],
            env=proxy_env(vault, s3, port=port, extra={"S3PROXY_LOG_LEVEL": "WARNING"}),
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_for(
                lambda: socket.create_connection(("127.0.0.1", port), 0.2).close() is None, "proxy"
            )
            os.environ.clear()
            os.environ.update(clean_env())
            through = boto3.session.Session().client(
                "s3",
                endpoint_url=f"http://localhost:{port}",
                aws_access_key_id="any",
                aws_secret_access_key="any",
                region_name="us-east-1",
            )
            bench_client("direct", s3.client(), "bench", size, args.small)
            bench_client("proxy", through, "bench", size, args.small)
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
