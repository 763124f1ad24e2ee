"""CPU seconds of the proxy process per large PutObject in each upload form toward the store
(docs/design.md, Checksums toward the store): a trailer checksum, signed chunks, none, and what
``auto`` learns, with moto and a throwaway Ceph RGW as upstreams (RGW refuses the trailer).
One worker per proxy; the rounds alternate the forms; medians.

    python bench/upload_forms.py [--size-mib 64] [--rounds 2]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from procstats import cpu_seconds, family

from s3proxy.devrgw import start_rgw
from s3proxy.devstack import S3Server, start_proxy_process, start_s3, start_vault

RUNS = [("moto", m) for m in ("crc32", "signed", "off", "auto")] + [
    ("rgw", m) for m in ("signed", "off", "auto")
]


def put(port: int, bucket: str, key: str, body: bytes) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request(
        "PUT",
        f"/{bucket}/{key}",
        body=body,
        headers={"Content-Length": str(len(body)), "x-amz-content-sha256": "UNSIGNED-PAYLOAD"},
    )
    resp = conn.getresponse()
    answer = resp.read()
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"PUT {resp.status}: {answer[:300]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="rounds, two PUTs each")
    args = parser.parse_args()
    body = os.urandom(args.size_mib * 2**20)
    work = Path(tempfile.mkdtemp(prefix="upload-forms-"))
    vault, moto = start_vault(work), start_s3(work)
    rgw = start_rgw(work)
    stores: dict[str, S3Server] = {"moto": moto, "rgw": rgw}
    found: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(args.rounds):
            for store, mode in RUNS:
                s3 = stores[store]
                bucket = f"forms-{uuid.uuid4().hex[:8]}"
                s3.client().create_bucket(Bucket=bucket)
                extra = {"S3PROXY_WORKERS": "1", "S3PROXY_UPSTREAM_CHECKSUM": mode}
                proc, port = start_proxy_process(work, vault, s3, extra)
                try:
                    put(port, bucket, "warm", body[:100_000])  # the probe, the first data key
                    pids = family(proc.proc.pid)
                    for i in range(2):
                        before = cpu_seconds(pids)
                        put(port, bucket, f"k{i}", body)
                        found.setdefault((store, mode), []).append(cpu_seconds(pids) - before)
                        s3.client().delete_object(Bucket=bucket, Key=f"k{i}")
                finally:
                    proc.stop()
    finally:
        rgw.stop()
        moto.stop()
        vault.stop()
    print(f"load {os.getloadavg()[0]:.1f}, {time.strftime('%H:%M')}")
    for (store, mode), seconds in found.items():
        listed = ", ".join(f"{s:.2f}" for s in sorted(seconds))
        print(
            f"{store:5} {mode:7} CPU s per {args.size_mib} MiB PUT: "
            f"median {statistics.median(seconds):.3f} ({listed})"
        )


if __name__ == "__main__":
    main()
