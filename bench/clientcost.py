"""The CPU one upstream request costs the proxy's upstream side alone (``Upstream.send``:
signing, the HTTP client, reading a 4 KiB answer), 64 requests at a time against the
benchmark's Go upstream, without the proxy's server side around it. Run it with each tree first
on PYTHONPATH to compare two versions (docs/upstream-client.md, Why):

    PYTHONPATH=TREE .venv/bin/python bench/clientcost.py [--requests 20000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from stack import BUCKET, UPSTREAM_KEY, build_upstream, spawn, wait_listening

from s3proxy.core.request import Target
from s3proxy.devstack import clean_env, free_port
from s3proxy.upstream.client import Upstream
from s3proxy.upstream.credentials import CredentialSource

REPO = Path(__file__).resolve().parent.parent
CONCURRENCY = 64


async def measure(port: int, requests: int, rounds: int) -> None:
    creds = CredentialSource.static(UPSTREAM_KEY, UPSTREAM_KEY)
    await creds.start()
    upstream = Upstream(f"http://127.0.0.1:{port}", "us-east-1", creds)
    await upstream.start()
    body = os.urandom(4096)
    put = await upstream.send("PUT", Target(BUCKET, "clientcost", ()), [], body)
    put.release()

    async def worker(count: int, method: str) -> None:
        for _ in range(count):
            if method == "GET":
                resp = await upstream.send("GET", Target(BUCKET, "clientcost", ()), [])
            else:
                resp = await upstream.send("PUT", Target(BUCKET, "sink/clientcost", ()), [], body)
            async with resp:
                await resp.read()

    try:
        for _ in range(rounds):
            for method in ("GET", "PUT"):
                cpu, wall = time.process_time(), time.monotonic()
                await asyncio.gather(
                    *(worker(requests // CONCURRENCY, method) for _ in range(CONCURRENCY))
                )
                cpu, wall = time.process_time() - cpu, time.monotonic() - wall
                print(
                    f"{method} 4 KiB: {cpu / requests * 1e6:,.0f} µs CPU per request, "
                    f"{requests / wall:,.0f} requests/s",
                    flush=True,
                )
    finally:
        await upstream.close()
        await creds.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="s3proxy-clientcost-") as tmp:
        binary = build_upstream(REPO / ".venv" / "bench-cache")
        port = free_port()
        upstream = spawn(
            [str(binary), "-listen", f"127.0.0.1:{port}"], clean_env(), Path(tmp) / "upstream.log"
        )
        try:
            wait_listening(upstream, port, "bench upstream")
            asyncio.run(measure(port, args.requests, args.rounds))
        finally:
            upstream.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
