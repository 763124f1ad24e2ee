"""One client request's record: its id, what it asked, what the upstream answered and how it
ended. Written as the request's access-log line and counted in the metrics when it ends.

The record lives in a context variable for the request's task, so the upstream client can note
its answers without being handed the record. It holds names, numbers and ids only: never a
header value, a body byte or a key.
"""

from __future__ import annotations

import logging
import secrets
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from s3proxy.telemetry import logs, metrics
from s3proxy.telemetry.logs import LINE_FIELDS

log = logging.getLogger("s3proxy")


def new_request_id() -> str:
    return secrets.token_hex(8).upper()


@dataclass
class RequestRecord:
    method: str
    request_id: str = field(default_factory=new_request_id)
    operation: str = "-"
    bucket: str | None = None
    key: str | None = None
    status: int = 0  # 0: no response was completed (the connection was cut)
    bytes_in: int = 0
    bytes_out: int = 0
    upstream_status: int | None = None  # of the last upstream request
    upstream_request_id: str | None = None
    upstream_bytes: int = 0
    error_code: str | None = None
    integrity: bool = False
    started: float = field(default_factory=time.monotonic)

    def log_fields(self, seconds: float) -> dict[str, Any]:
        """The line's fields in the order of :data:`s3proxy.telemetry.logs.FIELDS`, those with no
        value left out."""
        values: dict[str, Any] = {"request_id": self.request_id, "method": self.method}
        values["operation"] = self.operation
        if self.bucket is not None:
            values["bucket"] = self.bucket
        if self.key is not None:
            values["key"] = self.key
        values["status"] = self.status
        values["bytes_in"] = self.bytes_in
        values["bytes_out"] = self.bytes_out
        values["duration_ms"] = round(seconds * 1000, 1)
        if self.upstream_status is not None:
            values["upstream_status"] = self.upstream_status
        if self.upstream_request_id is not None:
            values["upstream_request_id"] = self.upstream_request_id
        values["upstream_bytes"] = self.upstream_bytes
        if self.error_code is not None:
            values["error_code"] = self.error_code
        return values

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


current: ContextVar[RequestRecord | None] = ContextVar("s3proxy_request", default=None)


def begin(method: str) -> RequestRecord:
    """A new record, made the current request's; counted in flight until :func:`finish`."""
    record = RequestRecord(method)
    current.set(record)
    metrics.IN_FLIGHT.inc()
    return record


def note_upstream(method: str, status: int, seconds: float, request_id: str | None) -> None:
    """An upstream answer (status 0: none came) for the current request, if any."""
    metrics.observe_upstream(method, status, seconds)
    record = current.get()
    if record is not None:
        record.upstream_status = status or None
        record.upstream_request_id = request_id or record.upstream_request_id


def finish(record: RequestRecord, resource: str) -> None:
    """Write the access-log line and count the request in the metrics."""
    seconds = record.seconds
    metrics.IN_FLIGHT.dec()
    metrics.observe_request(
        record.operation, record.status, seconds, record.bytes_in, record.bytes_out
    )
    if record.integrity:
        metrics.INTEGRITY_FAILURES.inc()
    if log.isEnabledFor(logging.INFO):
        message = (
            f"{record.method} {resource} {record.operation} -> "
            f"{record.status or 'aborted'} in {seconds * 1000:.1f} ms"
        )
        fields = record.log_fields(seconds)
        direct = logs.direct_lines
        if direct is None or not direct(log, message, fields):
            log.info("%s", message, extra={LINE_FIELDS: fields})


# Body bytes received from the upstream for the current client request (for the access log).
upstream_bytes: ContextVar[list[int]] = ContextVar("upstream_bytes")


def count_upstream(data: bytes) -> bytes:
    """``data``, counted as received from the upstream for the current request's record."""
    counter = upstream_bytes.get(None)
    if counter is not None:
        counter[0] += len(data)
    return data
