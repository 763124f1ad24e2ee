"""The proxy's cache of object layouts: what it keeps as objects are written again."""

from __future__ import annotations

import os
from typing import Any, cast

from s3proxy.core.format import StreamEncryptor
from s3proxy.core.layout import Layout
from s3proxy.core.request import Target
from tests.inproc import ObjectInfo, ObjectInspector


def _info(length: int) -> ObjectInfo:
    header = StreamEncryptor(os.urandom(32), "vault:v1:k", length).parsed_header
    return ObjectInfo(Layout.from_headers([header]), (None,), f'"{length:032x}"')


def test_a_key_written_again_keeps_only_its_latest_layout() -> None:
    objects = ObjectInspector(cast(Any, None), cast(Any, None))
    target = Target("bkt", "backup/manifest", ())
    infos = {f'"{n:032d}"': _info(n) for n in range(1, 51)}
    for etag, info in infos.items():
        objects.remember(target, etag, info)
    latest = list(infos)[-1]
    assert objects.last_seen(target) == (latest, infos[latest])
    for etag in list(infos)[:-1]:
        assert objects.cached(target, etag, None, None) is None
    other = Target("bkt", "other", ())
    objects.remember(other, '"1"', infos[latest])
    assert objects.cached(target, latest, None, None) is infos[latest]  # other keys untouched
    assert objects.cached(other, '"1"', None, None) is infos[latest]
