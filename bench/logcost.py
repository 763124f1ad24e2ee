"""The cost of one request's record at its end (``accesslog.finish``: the metrics and the
access-log line), in µs, with the line written at INFO to /dev/null and with logging at
WARNING (the metrics alone). docs/performance-history.md, Changes and what they bought.

    python bench/logcost.py [--lines 20000]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from s3proxy.telemetry import accesslog
from s3proxy.telemetry.logs import setup_logging


def per_line(count: int) -> float:
    records = [accesslog.begin("GET") for _ in range(count)]
    for record in records:
        record.operation, record.bucket, record.key = "GetObject", "bench", "small/obj-12"
        record.status, record.bytes_out, record.upstream_status = 200, 4096, 200
        record.upstream_request_id = "0123456789ABCDEF"
    started = time.perf_counter()
    for record in records:
        accesslog.finish(record, "/bench/small/obj-12")
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=20000)
    args = parser.parse_args()
    real_stderr = sys.stderr
    with open("/dev/null", "w") as sink:
        sys.stderr = sink
        setup_logging("INFO")
        logged = per_line(args.lines)
        logging.getLogger().setLevel("WARNING")
        silent = per_line(args.lines)
    sys.stderr = real_stderr
    print(f"finish() with the access-log line: {logged:.1f} µs; metrics alone: {silent:.1f} µs")


if __name__ == "__main__":
    main()
