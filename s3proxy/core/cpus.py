"""How many workers ``S3PROXY_WORKERS=auto`` runs: the cgroup's CPU quota (a Kubernetes CPU
limit), rounded up (a quota of 1.5 CPUs gets 2 workers) and at most the CPUs the process may run
on; one when there is no quota. Pure: the caller reads the files."""

from __future__ import annotations

import math


def quota_cpus(
    cpu_max: str | None = None, cfs_quota: str | None = None, cfs_period: str | None = None
) -> int | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` ("max 100000" or "150000 100000") or cgroup v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; None when unlimited or unreadable."""
    quota: float | None = None
    period: float | None = None
    try:
        if cpu_max is not None:
            fields = cpu_max.split()
            if len(fields) == 2 and fields[0] != "max":
                quota, period = float(fields[0]), float(fields[1])
        elif cfs_quota is not None and cfs_period is not None:
            quota, period = float(cfs_quota), float(cfs_period)
    except ValueError:
        return None
    if quota is None or period is None or quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def usable_cpus(affinity: int, quota: int | None) -> int:
    """Workers for ``auto``: the container's CPU quota, within the CPUs the process may run on;
    one without a quota (a process on a host, a container without a CPU limit), where taking
    every core, and a worker's memory for each, was not asked for."""
    return max(1, min(affinity, quota)) if quota is not None else 1
