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
from typing import Any

from s3proxy.telemetry.accesslog import FIELDS, LINE_FIELDS

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
    whole = int(record.created)
    millis = int((record.created - whole) * 1000)
    return f"{_second(whole)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4)
def _second(whole: int) -> str:
    """The time to the second, formatted once for all the lines within it."""
    return dt.datetime.fromtimestamp(whole, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with ``severity`` and ``message`` as log collectors expect."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info and record.levelno >= logging.ERROR:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    """``<time> <severity> <logger>: <message>`` and the request id, if the line has one."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_time(record)} {record.levelname} {record.name}: {record.getMessage()}"
        request_id = _fields(record).get("request_id")
        if request_id:
            line += f" [request_id={request_id}]"
        if record.exc_info and record.levelno >= logging.ERROR:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: str, log_format: str = "json") -> None:
    # No line shows the caller, thread or process: logging need not look them up per line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if log_format == "text" else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp logs a traceback for every connection the proxy cuts on purpose.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    for noisy in ("botocore", "urllib3", "hvac"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
