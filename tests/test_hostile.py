"""Hostile input through the real proxy (issue 9): odd bytes in the request still get a
well-formed S3 error document."""

from __future__ import annotations

import http.client
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import ProxyProcess


@pytest.mark.parametrize(
    "path",
    [
        "/some-bucket/%FF?torrent",
        "/some-bucket/ctl%08key?torrent",
        "/some-bucket/%ED%A0%80?torrent",
    ],
)
def test_odd_keys_get_well_formed_error_documents(proxy: ProxyProcess, path: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    connection.request("GET", path)
    resp = connection.getresponse()
    body = resp.read()
    connection.close()
    assert resp.status == 501, body
    root = ET.fromstring(body)
    assert root.findtext("Code") == "NotImplemented"
    assert root.findtext("Resource", "").startswith("/some-bucket/")
