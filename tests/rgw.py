"""A real Ceph RADOS Gateway as a test peer (``s3proxy.devrgw``: a throwaway single-node Ceph
from Debian's packages, ``make system-deps``). Unlike moto and LocalStack it verifies SigV4,
payload hashes, aws-chunked chunk signatures and Content-MD5, and before Reef it refuses the
trailer payload (``STREAMING-UNSIGNED-PAYLOAD-TRAILER``) (/work/shared/notes/facts.md §7).

A test module loads this plugin with ``pytest_plugins = ["tests.rgw"]``; the session fixture
``rgw`` starts one at the first test that asks for it (about 2 to 6 s) and never skips: without
Ceph installed the tests fail, naming the command that installs it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from s3proxy.devrgw import RgwServer, available, start_rgw

RGW = RgwServer


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RgwServer]:
    if not available():
        pytest.fail("Ceph is not installed: run `make system-deps` (ceph-mon ceph-osd radosgw)")
    started = time.monotonic()
    # A short path: Ceph's admin sockets are Unix sockets (108 bytes at most).
    server = start_rgw(tmp_path_factory.mktemp("rgw"), memstore_bytes=1 << 30)
    print(f"Ceph RGW at {server.endpoint} answered after {time.monotonic() - started:.1f}s")
    yield server
    server.stop()
