"""The floor under s3proxy's per-request cost: a bare aiohttp relay (server and client, no
signing, no encryption, no logging) in front of the benchmark's upstream, under the same wrk
loads. docs/performance.md (Where it stands against the targets) and
docs/performance-history.md (the baseline) use it to tell the framework's cost from the
proxy's own.

    python bench/floor.py [--duration 10] [--uvloop]

``--uvloop`` runs the relay on uvloop's event loop (pip install uvloop).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import aiohttp
import loads
from aiohttp import web
from procstats import Meter
from stack import build_upstream, http_status, spawn, wait_listening

from s3proxy.devstack import clean_env, free_port

REPO = Path(__file__).resolve().parent.parent
HOP = ("connection", "keep-alive", "transfer-encoding", "host", "content-length")


def relay_app(upstream: str) -> web.Application:
    session: list[aiohttp.ClientSession] = []

    async def start(app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=256)
        session.append(aiohttp.ClientSession(connector=connector, auto_decompress=False))

    async def stop(app: web.Application) -> None:
        await session[0].close()

    async def handle(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        length = request.content_length
        if length:
            headers["Content-Length"] = str(length)
        body = request.content.iter_chunked(256 * 1024) if length else None
        async with session[0].request(
            request.method, upstream + request.raw_path, headers=headers, data=body
        ) as resp:
            out = web.StreamResponse(status=resp.status)
            for k, v in resp.headers.items():
                if k.lower() not in HOP:
                    out.headers[k] = v
            out.content_length = resp.content_length
            await out.prepare(request)
            async for chunk in resp.content.iter_chunked(256 * 1024):
                await out.write(chunk)
            await out.write_eof()
            return out

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def serve(port: int, upstream: str, uvloop: bool) -> None:
    loop = None
    if uvloop:
        import uvloop as uv

        loop = uv.new_event_loop()
    web.run_app(
        relay_app(upstream), host="127.0.0.1", port=port, access_log=None, print=None, loop=loop
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "UPSTREAM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], args.uvloop)
        return
    workdir = Path(tempfile.mkdtemp(prefix="s3proxy-floor-"))
    binary = build_upstream(REPO / ".venv" / "bench-cache")
    up_port, relay_port = free_port(), free_port()
    upstream = spawn([str(binary), "-listen", f"127.0.0.1:{up_port}"], clean_env(), workdir / "u")
    relay = None
    try:
        wait_listening(upstream, up_port, "upstream")
        http_status(up_port, "PUT", "/bench/small-plain", os.urandom(4096))
        cmd = [sys.executable, __file__, "--serve", str(relay_port), f"http://127.0.0.1:{up_port}"]
        cmd += ["--uvloop"] if args.uvloop else []
        relay = spawn(cmd, clean_env(), workdir / "relay.log")
        wait_listening(relay, relay_port, "relay")
        base = f"http://127.0.0.1:{relay_port}"
        loads.wrk(base, "GET", "small-plain", 16, 1)  # warm
        for method, key in (("GET", "small-plain"), ("PUT", "sink/put-4k")):
            meter = Meter(relay.proc.pid)
            meter.start()
            found = loads.wrk(base, method, key, 64, args.duration)
            used = meter.stop()
            per = used.cpu_s / found["requests"] * 1e6
            print(
                f"aiohttp relay{' on uvloop' if args.uvloop else ''}, wrk {method} 4 KiB, "
                f"64 conn: {found['req/s']:,.0f} req/s, "
                f"p50 {found['p50 ms']:.1f} ms, {per:.0f} µs CPU per request, "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        if relay is not None:
            relay.stop()
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
