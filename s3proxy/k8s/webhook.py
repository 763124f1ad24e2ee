"""``s3proxy webhook``: the injector's HTTPS server. POST /mutate answers AdmissionReviews with
s3proxy/k8s/inject.py; GET /healthz answers 200. The certificate and key are re-read when their
files change (cert-manager renews them in place)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from s3proxy.k8s.inject import review
from s3proxy.server.tls import CertificateFiles

log = logging.getLogger("s3proxy.webhook")
MAX_BODY = 3 * 1024 * 1024  # the API server's own limit on a request is 3 MiB
RELOAD_SECONDS = 30.0


@dataclass(frozen=True)
class WebhookConfig:
    host: str
    port: int
    cert_file: str
    key_file: str
    defaults: Mapping[str, str]


def make_app(defaults: Mapping[str, str]) -> web.Application:
    async def mutate(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        answer = review(body, defaults)
        response = answer["response"]
        log.info(
            "admission review %s: %s",
            response["uid"],
            "; ".join(response.get("warnings", []))
            or ("injected" if "patch" in response else "unchanged"),
        )
        return web.json_response(answer)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/mutate", mutate)
    app.router.add_get("/healthz", healthz)
    return app


async def _reload(files: CertificateFiles) -> None:
    while True:
        await asyncio.sleep(RELOAD_SECONDS)
        try:
            if files.reload_if_changed():
                log.info("reloaded the TLS certificate")
        except (OSError, ssl.SSLError) as exc:
            log.warning("cannot reload the TLS certificate: %s", exc)


async def run_webhook(config: WebhookConfig, ready: asyncio.Event | None = None) -> None:
    files = CertificateFiles(config.cert_file, config.key_file)
    runner = web.AppRunner(make_app(config.defaults), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, ssl_context=files.context)
    await site.start()
    log.info("s3proxy webhook listening on https://%s:%d", config.host, config.port)
    reloader = asyncio.create_task(_reload(files))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        reloader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reloader
        await runner.cleanup()
