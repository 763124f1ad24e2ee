"""How the process is operated: admin listener, logs, shutdown, workers, body bounds."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from s3proxy.config.values import ConfigError, _choice, _flag, _listen, _number, _require
from s3proxy.core.cpus import quota_cpus, usable_cpus


@dataclass(frozen=True)
class OpsSettings:
    """How the process is operated: its admin listener, log format and shutdown."""

    admin_listen: tuple[str, int] | None = ("0.0.0.0", 8191)  # None: no admin listener
    readiness_requires_vault: bool = False
    log_format: str = "json"
    shutdown_delay: float = 0.0
    shutdown_grace: float = 25.0
    workers: int = 1


@dataclass(frozen=True)
class BodySettings:
    """Bounds on reading request bodies (docs/design.md, Bounds under hostile load)."""

    idle_timeout: float = 20.0  # seconds a body may send nothing (S3 waits about 20)
    held_timeout: float = 60.0  # seconds a body held in memory may take in all
    memory: int = 64 * 1024 * 1024  # bytes of bodies held in memory at once, per process


def _bodies(values: Mapping[str, str | None]) -> BodySettings:
    found = {}
    for name in ("S3PROXY_BODY_IDLE_TIMEOUT", "S3PROXY_BODY_HELD_TIMEOUT", "S3PROXY_BODY_MEMORY"):
        found[name] = _number(values, name, positive=True)
        if not math.isfinite(found[name]):
            raise ConfigError(f"{name} must be a finite number")
    memory = found["S3PROXY_BODY_MEMORY"]
    if memory != int(memory) or memory < 1024 * 1024:
        raise ConfigError("S3PROXY_BODY_MEMORY must be a whole number of bytes, at least 1 MiB")
    return BodySettings(
        idle_timeout=found["S3PROXY_BODY_IDLE_TIMEOUT"],
        held_timeout=found["S3PROXY_BODY_HELD_TIMEOUT"],
        memory=int(memory),
    )


def _ops(values: Mapping[str, str | None]) -> OpsSettings:
    admin = _require(values, "S3PROXY_ADMIN_LISTEN")
    log_format = _choice(values, "S3PROXY_LOG_FORMAT", ("json", "text"))
    requires_vault = _flag(values, "S3PROXY_READINESS_REQUIRES_VAULT")
    return OpsSettings(
        admin_listen=None if admin.lower() == "off" else _listen(admin, "S3PROXY_ADMIN_LISTEN"),
        readiness_requires_vault=requires_vault,
        log_format=log_format,
        shutdown_delay=_number(values, "S3PROXY_SHUTDOWN_DELAY"),
        shutdown_grace=_number(values, "S3PROXY_SHUTDOWN_GRACE"),
        workers=parse_workers(_require(values, "S3PROXY_WORKERS")),
    )


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _quota() -> int | None:
    return quota_cpus(
        _read("/sys/fs/cgroup/cpu.max"),
        _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
        _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
    )


def cores_available() -> int:
    """The CPUs this process may use: those it may run on, within the cgroup's CPU quota."""
    affinity = len(os.sched_getaffinity(0))
    quota = _quota()
    return affinity if quota is None else max(1, min(affinity, quota))


def parse_workers(value: str) -> int:
    if value.strip().lower() == "auto":
        return usable_cpus(len(os.sched_getaffinity(0)), _quota())
    if not value.strip().isdigit() or not 1 <= int(value) <= 64:
        raise ConfigError(f"S3PROXY_WORKERS must be auto or a number from 1 to 64, got {value!r}")
    return int(value)
