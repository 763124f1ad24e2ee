"""Operator command ``s3proxy decrypt`` (break-glass, Vault only). See docs/keys.md.

It is the strictest reader there is: besides every segment and trailer it checks what a GET
checks of the object as a whole (the whole-object flag, the manifest of a multipart object, the
name binding when given the name), and releases no plaintext unless all of it holds: the
plaintext goes to a temporary file first, renamed to the output (or copied to stdout) only at
the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from s3proxy.config import Config
from s3proxy.core.errors import IntegrityError, S3ProxyError
from s3proxy.core.footer import footer_key_version, open_footer
from s3proxy.core.format import Header
from s3proxy.core.layout import (
    MAX_STREAMS,
    Layout,
    SequentialDecryptor,
    check_name_binding,
    check_object_shape,
)
from s3proxy.core.manifest import check_manifest, needs_manifest
from s3proxy.core.request import Target
from s3proxy.core.wholeobject import check_layout, is_whole_record, open_whole, whole_key_version
from s3proxy.keys.transit import VaultTransit, vault_from
from s3proxy.store.tags import Tags
from s3proxy.upstream.client import upstream_from
from s3proxy.upstream.credentials import CredentialSource, resolve

log = logging.getLogger("s3proxy.ops.tools")

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class DecryptOptions:
    """What is known of the object besides its bytes."""

    bucket: str | None = None  # its name: checks the streams' name binding
    key: str | None = None
    version_id: str | None = None  # which version's tags to fetch
    manifest: str | None = None  # its s3proxy-manifest tag; else fetched with bucket and key
    require_binding: bool = False  # refuse streams not bound to bucket/key


async def _login(vault: VaultTransit) -> None:
    await asyncio.get_running_loop().run_in_executor(None, vault.auth.login)


# ---- decrypt ---------------------------------------------------------------------------------


async def decrypt(
    config: Config,
    src: BinaryIO,
    output: Path | None,
    options: DecryptOptions | None = None,
    stdout: BinaryIO | None = None,
) -> int:
    """Turn a stored object (as downloaded raw from the bucket) into its plaintext, written to
    ``output`` (``None``: ``stdout``) only once the whole object verified."""
    options = options or DecryptOptions()
    if options.require_binding and not (options.bucket and options.key):
        print("s3proxy decrypt: --require-binding needs --bucket and --key", file=sys.stderr)
        return 2
    vault = vault_from(config.vault)
    try:
        with _Staging(output) as staged:
            await _login(vault)
            headers, keys = await _decrypt_streams(vault, src, staged.file)
            await _verify(config, vault, Layout.from_headers(headers), keys, options)
            staged.release(stdout or sys.stdout.buffer)
    except S3ProxyError as exc:
        print(f"s3proxy decrypt: {exc.message} Nothing was written.", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"s3proxy decrypt: {exc}. Nothing was written.", file=sys.stderr)
        return 1
    finally:
        vault.close()
    return 0


async def _decrypt_streams(
    vault: VaultTransit, src: BinaryIO, dst: BinaryIO
) -> tuple[list[Header], dict[str, bytes]]:
    """Every stream of the input decrypted into ``dst``; their headers in order and the data
    keys by wrapped key."""
    decryptor = SequentialDecryptor()
    headers: list[Header] = []
    keys: dict[str, bytes] = {}
    while True:
        chunk = src.read(CHUNK)
        out = decryptor.feed(chunk) if chunk else b""
        while decryptor.needs_key is not None:
            headers.append(decryptor.needs_key)
            if len(headers) > MAX_STREAMS:
                raise IntegrityError(f"The stored object has more than {MAX_STREAMS} streams.")
            wrapped = decryptor.needs_key.wrapped_key
            if wrapped not in keys:
                keys[wrapped] = await vault.unwrap(wrapped)
            decryptor.provide_key(keys[wrapped])
            out += decryptor.feed(b"")
        dst.write(out)
        if not chunk:
            break
    decryptor.finish()
    for header, footer in decryptor.footers:  # v3: each footer is its stream's
        metadata_key = await vault.metadata_key(footer_key_version(footer))
        open_footer(metadata_key, footer, header)
    return headers, keys


async def _verify(
    config: Config,
    vault: VaultTransit,
    layout: Layout,
    keys: dict[str, bytes],
    options: DecryptOptions,
) -> None:
    """What a GET checks of the whole object (core/layout.py, core/manifest.py). Without its
    metadata, the object is a multipart one if it has several streams or its one stream does
    not say it is a whole object; one part alone, parts joined to a whole object's stream, and
    parts dropped, reordered or swapped are then caught by the flags and the manifest."""
    first = layout.streams[0].header
    multipart = len(layout.streams) > 1 or (first.version >= 2 and not first.whole_object)
    check_object_shape(layout, multipart)
    if options.bucket and options.key:
        allowed = not options.require_binding
        check_name_binding(layout, options.bucket, options.key, unbound_allowed=allowed)
    elif any(s.header.name_bound for s in layout.streams):
        raise IntegrityError(
            "The object is bound to its name: give it with --bucket and --key to check it."
        )
    if multipart and needs_manifest(layout):
        manifest = options.manifest
        if manifest is None:
            manifest = await _fetch_manifest(config, options)
        if manifest is not None and is_whole_record(manifest):  # v3: sealed facts
            metadata_key = await vault.metadata_key(whole_key_version(manifest))
            check_layout(open_whole(metadata_key, manifest), layout)
        else:
            check_manifest(keys[first.wrapped_key], layout, manifest)


async def _fetch_manifest(config: Config, options: DecryptOptions) -> str | None:
    """The object's manifest tag, read from the store with the configured S3 settings."""
    if not (options.bucket and options.key):
        raise IntegrityError(
            "The multipart object's parts are proven only by its manifest: give its "
            "s3proxy-manifest tag with --manifest, or --bucket and --key to read it from the "
            "store."
        )
    credentials = CredentialSource(lambda: resolve(config.upstream.credentials))
    upstream = upstream_from(config.upstream, credentials)
    query = (("versionId", options.version_id),) if options.version_id else ()
    try:
        await credentials.start()
        await upstream.start()
        return await Tags(upstream).manifest(Target(options.bucket, options.key, query))
    finally:
        await upstream.close()
        await credentials.close()


class _Staging:
    """Where the plaintext waits until the object verified: a new file beside ``output``
    (``O_EXCL | O_NOFOLLOW``, mode 0600), renamed over it at the end; for stdout, an unnamed
    temporary file, copied out at the end. Removed on any failure."""

    def __init__(self, output: Path | None) -> None:
        self.output = output
        self.path: str | None = None
        self.file: BinaryIO

    def __enter__(self) -> _Staging:
        if self.output is None:
            self.file = tempfile.TemporaryFile()
        else:
            directory = self.output.parent
            fd, self.path = tempfile.mkstemp(
                prefix=f".{self.output.name}.", suffix=".partial", dir=directory
            )
            self.file = os.fdopen(fd, "w+b")
        return self

    def release(self, stdout: BinaryIO) -> None:
        """Everything verified: hand the plaintext over."""
        self.file.flush()
        if self.output is None or self.path is None:
            self.file.seek(0)
            shutil.copyfileobj(self.file, stdout, CHUNK)
            stdout.flush()
            return
        os.fsync(self.file.fileno())
        os.replace(self.path, self.output)
        self.path = None

    def __exit__(self, *exc: object) -> None:
        self.file.close()
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
