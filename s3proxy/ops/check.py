"""``s3proxy check``: each dependency of the configuration tried once, one line per check with a
verdict: Vault login, the transit key (a data key made and unwrapped), the upstream credentials
and whom they belong to, HeadBucket for each bucket named, and with ``--write-test`` an object
written through the proxy's own encryption, read back and deleted."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TextIO

import aiohttp
from aiohttp import web

from s3proxy.config import Config
from s3proxy.core.errors import S3ProxyError
from s3proxy.core.request import Target
from s3proxy.keys.cache import CachingKeyService
from s3proxy.keys.transit import VaultTransit, vault_from
from s3proxy.server.app import Proxy
from s3proxy.server.identity import Identity
from s3proxy.server.shell import ProxyServer
from s3proxy.upstream.client import Upstream, upstream_from
from s3proxy.upstream.credentials import CredentialSource, resolve

WRITE_TEST_PREFIX = ".s3proxy-check/"


class CheckFailed(Exception):
    """A check's verdict: what failed, in words an operator can act on."""


@dataclass
class Checks:
    config: Config
    vault: VaultTransit
    credentials: CredentialSource
    upstream: Upstream

    async def vault_login(self) -> str:
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.vault.auth.login)
        except Exception as exc:
            raise CheckFailed(f"{self.config.vault.addr}: {_first_line(exc)}") from exc
        return f"{self.config.vault.addr}, {self.config.vault.auth.method} auth"

    async def transit_key(self) -> str:
        name = f"{self.config.vault.transit_mount}/{self.config.vault.transit_key}"
        try:
            key = await self.vault.new_data_key()
        except S3ProxyError as exc:
            raise CheckFailed(f"{name}: cannot make a data key: {exc.message}") from exc
        try:
            plaintext = await self.vault.unwrap(key.wrapped)
        except S3ProxyError as exc:
            raise CheckFailed(f"{name}: cannot decrypt a data key: {exc.message}") from exc
        if plaintext != key.plaintext:
            raise CheckFailed(f"{name}: the decrypted data key differs from the one made")
        try:
            await self.vault.metadata_key()
        except S3ProxyError as exc:
            raise CheckFailed(
                f"{name}: cannot derive the metadata key (hmac): {exc.message}"
            ) from exc
        return f"{name}: datakey, decrypt and hmac allowed"

    async def upstream_credentials(self) -> str:
        loop = asyncio.get_running_loop()
        try:
            found, source = await loop.run_in_executor(
                None, resolve, self.config.upstream.credentials
            )
            if found is None:
                raise CheckFailed(f"none found ({source})")
            key = (await loop.run_in_executor(None, found.get_frozen_credentials)).access_key
        except CheckFailed:
            raise
        except Exception as exc:  # botocore's own errors: STS refusals, unreadable files…
            raise CheckFailed(_first_line(exc)) from exc
        await self.credentials.start()
        described = await Identity(self.config, self.credentials).describe()
        who = described["caller_identity"]
        if isinstance(who, dict):
            who = who.get("Arn") or who
        if isinstance(who, str) and who.startswith("unavailable"):
            raise CheckFailed(f"{source}, key {key}: GetCallerIdentity {who}")
        # ListBuckets: the upstream's verdict on the signature (a refusal by policy is fine)
        resp = await self.upstream.send("GET", Target(None, None, ()), [])
        async with resp:
            code = _error_code(await resp.read()) if resp.status != 200 else ""
        if code.startswith(("SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken")):
            raise CheckFailed(f"{source}, key {key}: the upstream says {code}")
        identity = f", identity {who}" if who else ""
        return f"{source}, key {key}{identity}; the upstream accepts its signature"

    async def bucket(self, bucket: str) -> str:
        resp = await self.upstream.send("HEAD", Target(bucket, None, ()), [])
        async with resp:
            if resp.status == 200:
                return f"{bucket}: HeadBucket 200 at {self.config.upstream.endpoint}"
        # HEAD has no error body: ask again for one to name the cause
        query = (("list-type", "2"), ("max-keys", "0"))
        probe = await self.upstream.send("GET", Target(bucket, None, query), [])
        async with probe:
            body = await probe.text()
        code = re.search(r"<Code>([^<]+)</Code>", body)
        raise CheckFailed(
            f"{bucket}: HeadBucket {resp.status} ({code.group(1) if code else 'no error code'})"
            f" at {self.config.upstream.endpoint}"
        )

    async def write_test(self, bucket: str, keys: CachingKeyService) -> str:
        """A small object through the proxy's own pipeline, on a loopback port of its own."""
        runner = ProxyServer(Proxy(self.config, keys, self.upstream)).runner()
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/{bucket}/{WRITE_TEST_PREFIX}{os.urandom(8).hex()}"
        data = os.urandom(70_000)
        try:
            async with aiohttp.ClientSession() as session:
                for method, body, expect in (("PUT", data, 200), ("GET", None, 200)):
                    async with session.request(method, url, data=body) as resp:
                        got = await resp.read()
                        if resp.status != expect:
                            raise CheckFailed(f"{method} {resp.status}: {_error_code(got)}")
                        if method == "GET" and got != data:
                            raise CheckFailed("the object read back differs from the one written")
                async with session.delete(url) as resp:
                    if resp.status != 204:
                        raise CheckFailed(f"DELETE {resp.status}: {_error_code(await resp.read())}")
        finally:
            await runner.cleanup()
        return f"{bucket}: {len(data)} bytes written encrypted, read back, deleted"


def _error_code(body: bytes) -> str:
    found = re.search(rb"<Code>([^<]+)</Code>(?:<Message>([^<]*)</Message>)?", body)
    if found is None:
        return "no error document"
    return " ".join(part.decode() for part in found.groups() if part)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


async def run_checks(
    config: Config, buckets: list[str], write_test: bool, out: TextIO = sys.stdout
) -> int:
    vault = vault_from(config.vault)
    credentials = CredentialSource(lambda: resolve(config.upstream.credentials))
    upstream = upstream_from(config.upstream, credentials)
    checks = Checks(config, vault, credentials, upstream)
    failed = 0

    async def check(name: str, run: Callable[[], Awaitable[str]]) -> bool:
        nonlocal failed
        try:
            detail = await run()
        except CheckFailed as exc:
            failed += 1
            out.write(f"FAIL  {name}: {exc}\n")
            return False
        except Exception as exc:  # an unexpected failure is a failed check, never a traceback
            failed += 1
            out.write(f"FAIL  {name}: {_first_line(exc)}\n")
            return False
        out.write(f"ok    {name}: {detail}\n")
        return True

    out.write(f"ok    configuration: listen {config.listen_host}:{config.listen_port}\n")
    try:
        await upstream.start()
        if await check("vault login", checks.vault_login):
            await check("transit key", checks.transit_key)
        else:
            out.write("skip  transit key: needs a Vault login\n")
        credentials_ok = await check("upstream credentials", checks.upstream_credentials)
        for bucket in buckets:
            if credentials_ok:
                await check("bucket", lambda b=bucket: checks.bucket(b))  # type: ignore[misc]
        if write_test:
            keys = CachingKeyService(vault, config.vault.cache_limits)
            for bucket in buckets or []:
                await check(
                    "write test",
                    lambda b=bucket: checks.write_test(b, keys),  # type: ignore[misc]
                )
            if not buckets:
                out.write("FAIL  write test: name a bucket with --bucket\n")
                failed += 1
    finally:
        await upstream.close()
        await credentials.close()
        vault.close()
    out.write(f"{'all checks passed' if not failed else f'{failed} check(s) failed'}\n")
    return 1 if failed else 0
