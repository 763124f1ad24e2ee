"""The process's log lines on stderr: one JSON object a line (``S3PROXY_LOG_FORMAT=json``, for
log collectors: ``time``, ``severity``, ``message``, and a request's fields) or plain text.

Only the fields named here are written, so a value passed to a log call by mistake (a header, a
token) never reaches the log unless a format string puts it in the message.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, Protocol

Fields = Mapping[str, Any]

# The fields an access-log line carries besides its message (docs/operations.md).
FIELDS = (
    "request_id",
    "method",
    "operation",
    "bucket",
    "key",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "upstream_status",
    "upstream_request_id",
    "upstream_bytes",
    "error_code",
)


# The attribute of a log record that holds an access line's fields, in FIELDS order.
LINE_FIELDS = "s3proxy_fields"


class LineWriter(Protocol):
    """Writes an access line without :mod:`logging`'s machinery; False: it did not."""

    def __call__(self, logger: logging.Logger, message: str, fields: dict[str, Any]) -> bool: ...


# Set by setup_logging; s3proxy.telemetry.accesslog writes through it. (This module imports
# neither that one nor the metrics: a supervisor of workers logs without importing them.)
direct_lines: LineWriter | None = None


EXTRA_FIELDS = (*FIELDS, "integrity")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The request fields of a line: an access line's, or those passed one by one."""
    line: dict[str, Any] | None = getattr(record, LINE_FIELDS, None)
    if line is not None:
        return line
    found = {}
    for name in EXTRA_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            found[name] = value
    return found


def _time(record: logging.LogRecord) -> str:
    return _time_of(record.created)


def _time_of(created: float) -> str:
    whole = int(created)
    millis = int((created - whole) * 1000)
    return f"{_second(whole)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4)
def _second(whole: int) -> str:
    """The time to the second, formatted once for all the lines within it."""
    return dt.datetime.fromtimestamp(whole, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with ``severity`` and ``message`` as log collectors expect."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        if record.exc_info and record.levelno >= logging.ERROR:
            fields = {**fields, "exception": self.formatException(record.exc_info)}
        return self.line(record.created, record.levelname, record.name, record.getMessage(), fields)

    @staticmethod
    def line(created: float, severity: str, logger: str, message: str, fields: Fields) -> str:
        entry: dict[str, Any] = {
            "time": _time_of(created),
            "severity": severity,
            "logger": logger,
            "message": message,
        }
        entry.update(fields)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    """``<time> <severity> <logger>: <message>`` and the request id, if the line has one."""

    def format(self, record: logging.LogRecord) -> str:
        line = self.line(
            record.created, record.levelname, record.name, record.getMessage(), _fields(record)
        )
        if record.exc_info and record.levelno >= logging.ERROR:
            line += "\n" + self.formatException(record.exc_info)
        return line

    @staticmethod
    def line(created: float, severity: str, logger: str, message: str, fields: Fields) -> str:
        line = f"{_time_of(created)} {severity} {logger}: {message}"
        request_id = fields.get("request_id")
        if request_id:
            line += f" [request_id={request_id}]"
        return line


class DirectLines:
    """Access-log lines written straight through the one handler :func:`setup_logging`
    installed, exactly as its formatter writes them, without a log record or a walk of the
    loggers (docs/performance.md, *The budget of a 4 KiB request*). It declines (and the line
    goes through :mod:`logging`) whenever anything else listens: another handler, a filter."""

    def __init__(
        self, handler: logging.StreamHandler[Any], formatter: JsonFormatter | TextFormatter
    ):
        self._handler = handler
        self._line = formatter.line
        self._root = logging.getLogger()

    def __call__(self, logger: logging.Logger, message: str, fields: Fields) -> bool:
        handler = self._handler
        handlers = self._root.handlers
        if (
            len(handlers) != 1
            or handlers[0] is not handler
            or logger.handlers
            or logger.filters
            or handler.filters
            or self._root.filters
            or not logger.propagate
        ):
            return False
        line = self._line(time.time(), "INFO", logger.name, message, fields)
        handler.acquire()
        try:
            handler.stream.write(line + handler.terminator)
            handler.flush()
        except Exception:  # (logging's own handling, below, reports it)
            return False
        finally:
            handler.release()
        return True


def setup_logging(level: str, log_format: str = "json") -> None:
    # No line shows the caller, thread or process: logging need not look them up per line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    formatter = TextFormatter() if log_format == "text" else JsonFormatter()
    handler.setFormatter(formatter)
    global direct_lines
    direct_lines = DirectLines(handler, formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp logs a traceback for every connection the proxy cuts on purpose.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    for noisy in ("botocore", "urllib3", "hvac"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
