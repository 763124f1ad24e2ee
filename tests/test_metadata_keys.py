"""Metadata keys (docs/format.md, Metadata keys) from a real OpenBao: derived from Transit's HMAC,
the same for every proxy and stable per key version across rotations, refused below
``min_decryption_version``, and asked once per version per process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3proxy.config import load
from s3proxy.core.errors import IntegrityError
from s3proxy.core.footer import MetadataKey
from s3proxy.devstack import Vault, start_vault
from s3proxy.keys.metadata import MetadataKeys
from s3proxy.keys.transit import VaultTransit, vault_from


@pytest.fixture
def own_vault(workdir: Path) -> Iterator[Vault]:
    """A Vault of this test's own: it rotates the transit key."""
    v = start_vault(workdir)
    yield v
    v.stop()


def _transit(vault: Vault) -> VaultTransit:
    config = load(
        {
            "S3PROXY_S3_ENDPOINT": "http://127.0.0.1:9",
            "S3PROXY_VAULT_TRANSIT_KEY": vault.transit_key,
            "VAULT_ADDR": vault.addr,
            "VAULT_TOKEN": vault.token,
        }
    )
    return vault_from(config.vault)


def test_metadata_keys_follow_the_transit_key_versions(own_vault: Vault) -> None:
    async def run() -> None:
        first, second = _transit(own_vault), _transit(own_vault)  # two proxies
        try:
            v1 = await first.metadata_key()
            assert v1.version == 1 and v1 == await second.metadata_key(1)
            rotated = own_vault.api("POST", f"transit/keys/{own_vault.transit_key}/rotate")
            assert rotated[0] in (200, 204)
            v2 = await second.metadata_key()
            assert v2.version == 2 and v2.key != v1.key
            assert await first.metadata_key(1) == v1  # still opens what v1 sealed
            config = f"transit/keys/{own_vault.transit_key}/config"
            own_vault.api("POST", config, {"min_decryption_version": 2})
            with pytest.raises(IntegrityError):
                await first.metadata_key(1)
            assert await first.metadata_key(2) == v2
        finally:
            first.close()
            second.close()

    asyncio.run(run())


def test_each_version_is_asked_once_however_many_ask() -> None:
    asked: list[int | None] = []

    async def source(version: int | None) -> MetadataKey:
        asked.append(version)
        await asyncio.sleep(0.01)
        return MetadataKey.derive(version or 4, bytes(32))

    async def run() -> None:
        now = [0.0]
        keys = MetadataKeys(source, latest_seconds=300, clock=lambda: now[0])
        found = await asyncio.gather(*(keys.version(3) for _ in range(50)))
        assert {k.version for k in found} == {3} and asked == [3]
        assert (await keys.latest()).version == 4 and asked == [3, None]
        await keys.latest()
        await keys.version(4)  # the latest's version is known by now
        assert asked == [3, None]
        now[0] = 301.0  # a rotation is taken up within latest_seconds
        await keys.latest()
        assert asked == [3, None, None]

    asyncio.run(run())


def test_a_failed_ask_is_not_remembered() -> None:
    calls = 0

    async def source(version: int | None) -> MetadataKey:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise IntegrityError("refused")
        return MetadataKey.derive(version or 1, bytes(32))

    async def run() -> None:
        keys = MetadataKeys(source)
        with pytest.raises(IntegrityError):
            await keys.version(1)
        assert (await keys.version(1)).version == 1 and calls == 2

    asyncio.run(run())
