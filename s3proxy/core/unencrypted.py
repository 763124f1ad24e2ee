"""Which objects the proxy did not write it may still return as they are stored. Pure.

Such objects are plaintext the provider could have placed under any key, so by default the
proxy refuses them (403). ``allow`` is for migrating a bucket that holds objects written before
the proxy, and can be narrowed to key prefixes and to objects last modified before a time (the
migration's start): plaintext put there later is refused all the same.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class UnencryptedPolicy:
    allow: bool = False
    prefixes: tuple[str, ...] = ()  # "bucket/key-prefix" (or "bucket/" for a whole bucket)
    before: dt.datetime | None = None  # only objects last modified before this

    def allows(self, bucket: str, key: str, last_modified: dt.datetime | None) -> bool:
        if not self.allow:
            return False
        if self.prefixes and not any(f"{bucket}/{key}".startswith(p) for p in self.prefixes):
            return False
        if self.before is not None:
            return last_modified is not None and last_modified < self.before
        return True


def parse_before(value: str) -> dt.datetime:
    """An ISO 8601 time (``2026-11-01T00:00:00Z``); a time without zone is UTC."""
    parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
