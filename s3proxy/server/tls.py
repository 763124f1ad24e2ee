"""The proxy's HTTPS listener (docs/operations.md, HTTPS): its SSLContext (TLS 1.2 and later,
the standard library's defaults otherwise), serving either a certificate pair from files,
reloaded when they change (cert-manager renews them in place), or the certificate made at start
(s3proxy/core/certs.py), whose CA is written for the workload to trust."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
from asyncio import sslproto
from dataclasses import replace
from typing import Any

from s3proxy.config import Config, TlsSettings
from s3proxy.core.access import is_loopback

log = logging.getLogger("s3proxy")
RELOAD_SECONDS = 5.0  # how often the certificate files are checked for a change
WILDCARDS = ("", "0.0.0.0", "::")


# Ciphertext read per receive on a server-side TLS connection. asyncio allocates its read buffer
# (256 KiB) for every TLS connection as it is accepted, before any byte arrives; 64 KiB still
# holds four full TLS records (docs/operations.md, HTTPS: what it costs).
SERVER_READ_BUFFER = 64 * 1024
# Seconds an accepted connection may take to complete its handshake (asyncio: 60, and aiohttp's
# site has no setting for it); a loopback handshake takes milliseconds.
SERVER_HANDSHAKE_TIMEOUT = 10.0


class _ServerSideBuffers(sslproto.SSLProtocol):
    """asyncio's TLS protocol with :data:`SERVER_READ_BUFFER` and
    :data:`SERVER_HANDSHAKE_TIMEOUT` for connections it accepts; the upstream client's
    connections keep the defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        server_side = kwargs.get("server_side", args[4] if len(args) > 4 else False)
        if server_side:
            self.max_size = SERVER_READ_BUFFER  # type: ignore[misc]
            if kwargs.get("ssl_handshake_timeout") is None and len(args) <= 7:
                kwargs["ssl_handshake_timeout"] = SERVER_HANDSHAKE_TIMEOUT
        super().__init__(*args, **kwargs)


def bound_server_buffers() -> None:
    """Make asyncio use :class:`_ServerSideBuffers` for the TLS connections it makes from now
    on (it looks ``sslproto.SSLProtocol`` up at each connection). Idempotent."""
    sslproto.SSLProtocol = _ServerSideBuffers  # type: ignore[misc]


def server_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # A client's TLS 1.2 renegotiation costs the server a handshake each time, on demand.
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(["http/1.1"])
    return context


def load_pem(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """``load_cert_chain`` from memory. ``ssl`` reads only files: the pair goes through an
    anonymous memory file (memfd), so a key that never was on disk is not written there."""
    data = cert_pem.rstrip(b"\n") + b"\n" + key_pem
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("s3proxy-tls", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="s3proxy-tls-") as directory:  # (0700)
        path = os.path.join(directory, "pair.pem")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
            handle.write(data)
        context.load_cert_chain(path)


class CertificateFiles:
    """An SSLContext serving ``cert_file``/``key_file``, reloaded when either file changes. A
    new pair is tried on a scratch context first: a half-written or mismatched pair leaves the
    one being served in place (and is tried again at the next check)."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.context = server_context()
        self._stamp: tuple[tuple[int, int, int, int], ...] | None = None
        self.reload_if_changed()

    def _stamps(self) -> tuple[tuple[int, int, int, int], ...]:
        # The inode too: a Secret volume swaps a symlink to new files, whose time may be equal.
        found = (os.stat(self.cert_file), os.stat(self.key_file))
        return tuple((s.st_mtime_ns, s.st_size, s.st_ino, s.st_dev) for s in found)

    def reload_if_changed(self) -> bool:
        stamp = self._stamps()
        if stamp == self._stamp:
            return False
        with open(self.cert_file, "rb") as cert, open(self.key_file, "rb") as key:
            cert_pem, key_pem = cert.read(), key.read()
        load_pem(server_context(), cert_pem, key_pem)  # raises on a bad pair
        load_pem(self.context, cert_pem, key_pem)  # new connections get the new pair
        self._stamp = stamp
        return True


async def keep_reloading(files: CertificateFiles, interval: float = RELOAD_SECONDS) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            if files.reload_if_changed():
                log.info("reloaded the TLS certificate %s", files.cert_file)
        except (OSError, ssl.SSLError) as exc:
            log.warning("cannot reload the TLS certificate %s: %s", files.cert_file, exc)


def write_public(path: str, data: bytes) -> None:
    """``data`` at ``path``, whole or not at all (a reader never sees half a file): written to
    a fresh file beside it, synced, then renamed over it; readable by every user."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, scratch = tempfile.mkstemp(prefix=".s3proxy-ca-", dir=directory)
    try:
        with open(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), 0o644)
            os.fsync(handle.fileno())
        os.replace(scratch, path)
    except BaseException:
        os.unlink(scratch)
        raise


def prepare(config: Config) -> Config:
    """Once, before serving (before workers start): without certificate files, make the
    listener's certificate and write its CA to S3PROXY_TLS_CA_OUT. The result carries it."""
    tls = config.tls
    if tls.listen is None or tls.cert_file or tls.generated:
        return config
    host = tls.listen[0]
    extra = [] if host in WILDCARDS or is_loopback(host) else [host]
    from s3proxy.core import certs  # (cryptography's x509: only where a certificate is made)

    generated = certs.generate(extra)
    outputs = [("S3PROXY_TLS_CA_OUT", tls.ca_out, generated.ca_pem)]
    if tls.ca_bundle_out:
        bundle = generated.ca_pem + b"\n" + system_cas()
        outputs.append(("S3PROXY_TLS_CA_BUNDLE_OUT", tls.ca_bundle_out, bundle))
    for name, path, data in outputs:
        if path:
            try:
                write_public(path, data)
            except OSError as exc:
                raise OSError(f"{name} {path}: {exc.strerror or exc}") from exc
    return replace(config, tls=replace(tls, generated=generated))


def system_cas() -> bytes:
    """The CA bundle this process's OpenSSL trusts by default (``SSL_CERT_FILE``, else the
    system's): what an SDK given AWS_CA_BUNDLE would otherwise have trusted."""
    paths = ssl.get_default_verify_paths()
    for path in (paths.cafile, paths.openssl_cafile):
        if path and os.path.isfile(path):
            with open(path, "rb") as handle:
                return handle.read()
    raise OSError("no system CA bundle found (SSL_CERT_FILE) for S3PROXY_TLS_CA_BUNDLE_OUT")


def listener_context(tls: TlsSettings) -> tuple[ssl.SSLContext, CertificateFiles | None]:
    """The listener's SSLContext, and the files to watch when it serves files."""
    if tls.cert_file and tls.key_file:
        try:
            files = CertificateFiles(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise OSError(
                f"S3PROXY_TLS_CERT_FILE {tls.cert_file} / S3PROXY_TLS_KEY_FILE {tls.key_file}: "
                f"cannot load the pair: {exc}"
            ) from exc
        return files.context, files
    if tls.generated is None:
        raise ValueError("listener_context needs prepare() first")
    context = server_context()
    load_pem(context, tls.generated.cert_pem, tls.generated.key_pem)
    return context, None
