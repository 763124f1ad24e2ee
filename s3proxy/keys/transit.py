"""The key service: data keys from Vault Transit (hvac), run off the event loop.

``new_data_key`` asks ``transit/datakey/plaintext/<key>`` for a fresh 256-bit data key and its
Vault-wrapped form; ``unwrap`` asks ``transit/decrypt/<key>`` for the data key of a wrapped key;
``metadata_key`` derives a key version's metadata key from ``transit/hmac/<key>``. Plaintext keys
live only in memory; nothing here logs them or puts them in an error.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import hvac
import hvac.exceptions
import requests

from s3proxy.config import VaultAuthSettings, VaultSettings
from s3proxy.core.errors import IntegrityError, KeyServiceUnavailable
from s3proxy.core.footer import METADATA_KEY_INPUT, MetadataKey
from s3proxy.keys.vaultauth import VaultAuth, vault_outcome
from s3proxy.telemetry import metrics

log = logging.getLogger(__name__)
_VAULT_HMAC = re.compile(r"vault:v([1-9][0-9]{0,9}):([A-Za-z0-9+/=]+)")
_WRAPPED_VERSION = re.compile(r"vault:v([1-9][0-9]{0,9}):")


def wrapped_version(wrapped: str) -> int:
    """The transit key version a wrapped data key (``vault:vN:…``) was wrapped with."""
    found = _WRAPPED_VERSION.match(wrapped)
    if found is None:
        raise IntegrityError("A stored wrapped data key is not a Vault transit ciphertext.")
    return int(found.group(1))


@dataclass(frozen=True)
class DataKey:
    plaintext: bytes
    wrapped: str

    def __repr__(self) -> str:  # never show the key
        return f"DataKey(wrapped={self.wrapped[:12]}...)"


class KeyService(Protocol):
    async def new_data_key(self, plaintext_bytes: int = 0) -> DataKey: ...

    async def unwrap(self, wrapped: str) -> bytes: ...

    async def metadata_key(self, version: int | None = None) -> MetadataKey: ...


class VaultTransit:
    """Vault Transit through hvac; every call runs in a small thread pool with a timeout, with
    the token :class:`VaultAuth` keeps fresh."""

    def __init__(
        self,
        addr: str,
        auth_settings: VaultAuthSettings,
        key: str,
        mount: str = "transit",
        *,
        cacert: str | None = None,
        client_cert: tuple[str, str] | None = None,
        namespace: str | None = None,
        timeout: float = 10.0,
        max_workers: int = 8,
    ) -> None:
        self._addr = addr
        self._key = key
        self._mount = mount
        self._verify: bool | str = cacert or True
        self._cert = client_cert
        self._namespace = namespace
        self._timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="vault")
        self._local = threading.local()
        self.auth = VaultAuth(auth_settings, self.make_client)

    def make_client(self, token: str | None) -> Any:
        return hvac.Client(
            url=self._addr,
            token=token,
            verify=self._verify,
            cert=self._cert,
            namespace=self._namespace,
            timeout=self._timeout,
        )

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self.make_client(self.auth.token)
            self._local.client = client
        client.token = self.auth.token
        return client

    def _with_relogin(self, fn: Any, *args: Any) -> Any:
        token = self.auth.token
        try:
            return fn(*args)
        except hvac.exceptions.Forbidden:
            if not self.auth.relogin_after_denial(token):
                raise
            return fn(*args)

    async def _call(self, what: str, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            with metrics.vault_call(what, vault_outcome):
                return await asyncio.wait_for(
                    loop.run_in_executor(self._pool, self._with_relogin, fn, *args),
                    self._timeout + 1,
                )
        except (TimeoutError, requests.exceptions.Timeout) as exc:
            log.error("vault %s timed out after %.1fs", what, self._timeout)
            raise KeyServiceUnavailable("The key service (Vault) timed out.") from exc
        except (requests.exceptions.ConnectionError, hvac.exceptions.VaultDown) as exc:
            log.error("vault %s failed: Vault is unreachable (%s)", what, type(exc).__name__)
            raise KeyServiceUnavailable("The key service (Vault) is unreachable.") from exc
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized) as exc:
            log.error(
                "vault %s denied: the proxy's token may not use transit key %r", what, self._key
            )
            raise KeyServiceUnavailable("The key service (Vault) denied the proxy access.") from exc
        except hvac.exceptions.InvalidPath as exc:
            log.error(
                "vault %s failed: transit key %r not found at mount %r",
                what,
                self._key,
                self._mount,
            )
            raise KeyServiceUnavailable("The key service (Vault) does not know the key.") from exc
        except (
            hvac.exceptions.InternalServerError,
            hvac.exceptions.VaultNotInitialized,
            hvac.exceptions.BadGateway,
            hvac.exceptions.RateLimitExceeded,
        ) as exc:
            log.error("vault %s failed: %s", what, type(exc).__name__)
            raise KeyServiceUnavailable("The key service (Vault) failed.") from exc

    def _datakey(self) -> DataKey:
        resp = self._client().secrets.transit.generate_data_key(
            name=self._key, key_type="plaintext", bits=256, mount_point=self._mount
        )
        data = resp["data"]
        return DataKey(plaintext=base64.b64decode(data["plaintext"]), wrapped=data["ciphertext"])

    def _decrypt(self, wrapped: str) -> bytes:
        resp = self._client().secrets.transit.decrypt_data(
            name=self._key, ciphertext=wrapped, mount_point=self._mount
        )
        return base64.b64decode(resp["data"]["plaintext"])

    async def new_data_key(self, plaintext_bytes: int = 0) -> DataKey:
        key: DataKey = await self._call("datakey", self._datakey)
        if len(key.plaintext) != 32:
            raise KeyServiceUnavailable(
                "The key service (Vault) returned a data key of the wrong size."
            )
        return key

    async def unwrap(self, wrapped: str) -> bytes:
        try:
            plaintext: bytes = await self._call("decrypt", self._decrypt, wrapped)
        except hvac.exceptions.InvalidRequest as exc:
            log.error("vault decrypt rejected the stored wrapped data key")
            raise IntegrityError(
                "The stored object's wrapped data key was rejected by the key service."
            ) from exc
        if len(plaintext) != 32:
            raise IntegrityError("The stored object's wrapped data key does not hold a data key.")
        return plaintext

    def _rewrap(self, wrapped: str) -> str:
        resp = self._client().secrets.transit.rewrap_data(
            name=self._key, ciphertext=wrapped, mount_point=self._mount
        )
        rewrapped: str = resp["data"]["ciphertext"]
        return rewrapped

    def _hmac(self, key_version: int | None) -> str:
        resp = self._client().secrets.transit.generate_hmac(
            name=self._key,
            hash_input=base64.b64encode(METADATA_KEY_INPUT).decode(),
            key_version=key_version,
            algorithm="sha2-256",
            mount_point=self._mount,
        )
        value: str = resp["data"]["hmac"]
        return value

    async def metadata_key(self, version: int | None = None) -> MetadataKey:
        """The metadata key of transit key version ``version`` (default: the latest): derived
        from Vault's HMAC of a fixed input, so every proxy of the key derives the same one
        (docs/format.md, Metadata keys)."""
        try:
            value: str = await self._call("hmac", self._hmac, version)
        except hvac.exceptions.InvalidRequest as exc:
            log.error("vault hmac refused transit key version %s", version)
            raise IntegrityError(
                "The key service refuses the metadata key version a stored object names."
            ) from exc
        found = _VAULT_HMAC.fullmatch(value)
        if found is None or (version is not None and int(found.group(1)) != version):
            raise KeyServiceUnavailable("The key service (Vault) returned an unexpected HMAC.")
        return MetadataKey.derive(int(found.group(1)), base64.b64decode(found.group(2)))

    def _latest_version(self) -> int:
        resp = self._client().secrets.transit.read_key(name=self._key, mount_point=self._mount)
        return int(resp["data"]["latest_version"])

    async def rewrap(self, wrapped: str) -> str:
        """The same data key wrapped with the transit key's latest version (Vault never
        returns the data key itself)."""
        try:
            rewrapped: str = await self._call("rewrap", self._rewrap, wrapped)
        except hvac.exceptions.InvalidRequest as exc:
            raise IntegrityError("Vault refused to rewrap a stored wrapped data key.") from exc
        return rewrapped

    async def latest_version(self) -> int:
        version: int = await self._call("read key", self._latest_version)
        return version

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def vault_from(settings: VaultSettings) -> VaultTransit:
    """The Vault Transit client the settings describe."""
    return VaultTransit(
        settings.addr,
        settings.auth,
        settings.transit_key,
        settings.transit_mount,
        cacert=settings.cacert,
        client_cert=settings.client_cert,
        namespace=settings.namespace,
        timeout=settings.timeout,
    )
