"""What the readers of GetObject and HeadObject share (server/reads.py, server/heads.py,
server/partreads.py): built once per proxy by server/app.py."""

from __future__ import annotations

from dataclasses import dataclass

from s3proxy.config import Config
from s3proxy.server.objects import ObjectInspector
from s3proxy.server.sending import PlaintextSender
from s3proxy.upstream.client import Upstream


@dataclass(frozen=True)
class ReadContext:
    config: Config
    upstream: Upstream
    objects: ObjectInspector
    sender: PlaintextSender
