"""Operator command ``s3proxy decrypt`` (break-glass, Vault only). See docs/keys.md."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from typing import BinaryIO

from s3proxy.config import Config
from s3proxy.core.errors import S3ProxyError
from s3proxy.core.layout import SequentialDecryptor
from s3proxy.keys.transit import VaultTransit
from s3proxy.serve import vault_from

log = logging.getLogger("s3proxy.ops.tools")

CHUNK = 1024 * 1024
_VERSION = re.compile(r"^vault:v(\d+):")


async def _login(vault: VaultTransit) -> None:
    await asyncio.get_running_loop().run_in_executor(None, vault.auth.login)


# ---- decrypt ---------------------------------------------------------------------------------


async def decrypt(config: Config, src: BinaryIO, dst: BinaryIO) -> int:
    """Turn a stored object (as downloaded raw from the bucket) into its plaintext."""
    vault = vault_from(config)
    try:
        await _login(vault)
        decryptor = SequentialDecryptor()
        keys: dict[str, bytes] = {}
        while True:
            chunk = src.read(CHUNK)
            out = decryptor.feed(chunk) if chunk else b""
            while decryptor.needs_key is not None:
                wrapped = decryptor.needs_key.wrapped_key
                if wrapped not in keys:
                    keys[wrapped] = await vault.unwrap(wrapped)
                decryptor.provide_key(keys[wrapped])
                out += decryptor.feed(b"")
            dst.write(out)
            if not chunk:
                break
        decryptor.finish()
        dst.flush()
    except S3ProxyError as exc:
        print(f"s3proxy decrypt: {exc.message} The output is incomplete.", file=sys.stderr)
        return 1
    finally:
        vault.close()
    return 0
