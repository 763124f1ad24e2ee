"""The proxy's HTTPS listener: an SSLContext serving a certificate pair from files, reloaded
when they change (cert-manager renews them in place). docs/operations.md, HTTPS."""

from __future__ import annotations

import os
import ssl


class CertificateFiles:
    """An SSLContext serving ``cert_file``/``key_file``, reloaded when either file changes."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stamp = self._mtimes()
        self.context.load_cert_chain(cert_file, key_file)

    def _mtimes(self) -> tuple[float, float]:
        return os.stat(self.cert_file).st_mtime, os.stat(self.key_file).st_mtime

    def reload_if_changed(self) -> bool:
        stamp = self._mtimes()
        if stamp == self._stamp:
            return False
        # New connections use the new pair; a half-written pair fails here and is retried.
        self.context.load_cert_chain(self.cert_file, self.key_file)
        self._stamp = stamp
        return True
