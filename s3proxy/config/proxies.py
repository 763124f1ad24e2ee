"""``HTTPS_PROXY``, ``HTTP_PROXY`` and ``NO_PROXY`` (and their lowercase forms) as botocore
honours them (``urllib.request.getproxies`` and ``proxy_bypass``): the lowercase variable wins,
``HTTP_PROXY`` is ignored in a CGI environment, a proxy URL without a scheme is ``http://``,
its user and password become ``Proxy-Authorization: Basic``. ``NO_PROXY`` lists host names
(matching the host and its subdomains, a leading dot or ``*.`` ignored), ``host:port``, IP
addresses and networks (``10.0.0.0/8``, as requests and curl take them), or ``*``."""

from __future__ import annotations

import ipaddress
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy: where it is, and the credentials to send it."""

    host: str
    port: int
    authorization: str | None = None  # the Proxy-Authorization value

    @classmethod
    def of(cls, url: str) -> Proxy:
        if url.startswith("//"):
            url = "http:" + url
        elif not url.startswith(("http:", "https:")):
            url = "http://" + url
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(
                f"proxy {url!r}: only http:// proxies are supported (the connection to the "
                "proxy is plain HTTP; an https endpoint's TLS goes through its CONNECT tunnel)"
            )
        if not parts.hostname:
            raise ValueError(f"proxy {url!r} names no host")
        authorization = None
        if parts.username is not None and parts.password is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password)}"
            authorization = "Basic " + b64encode(pair.encode("utf-8")).decode("ascii")
        return cls(parts.hostname, parts.port or 80, authorization)


@dataclass(frozen=True)
class ProxyEnvironment:
    """The proxy variables, read once (at start)."""

    http: str | None = None
    https: str | None = None
    no_proxy: str | None = None

    @classmethod
    def of(cls, environ: Mapping[str, str]) -> ProxyEnvironment:
        found: dict[str, str] = {}
        for name, value in environ.items():  # any case first, then lowercase wins
            if value and name.lower() in _NAMES:
                found[name.lower()] = value
        if "REQUEST_METHOD" in environ:  # (CVE-2016-1000110, as urllib)
            found.pop("http_proxy", None)
        for name, value in environ.items():
            if name in _NAMES:
                if value:
                    found[name] = value
                else:
                    found.pop(name, None)
        return cls(found.get("http_proxy"), found.get("https_proxy"), found.get("no_proxy"))

    def proxy_for(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for requests to ``scheme://host:port``, or None to connect directly."""
        url = self.https if scheme == "https" else self.http
        if not url or bypassed(self.no_proxy or "", host, port):
            return None
        return Proxy.of(url)


_NAMES = frozenset({"http_proxy", "https_proxy", "no_proxy"})


def bypassed(no_proxy: str, host: str, port: int) -> bool:
    """Whether ``NO_PROXY`` names ``host`` (at ``port``)."""
    host = host.lower().strip("[]")
    address = _address(host)
    for entry in no_proxy.split(","):
        name = entry.strip().lower()
        if not name:
            continue
        if name == "*":
            return True
        if name.startswith("*."):
            name = name[1:]
        name = name.lstrip(".")
        name, _, only_port = _split_port(name)
        if only_port and only_port != str(port):
            continue
        name = name.strip("[]")
        if address is not None:
            if _in_network(address, name):
                return True
        elif host == name or host.endswith("." + name):
            return True
    return False


def _split_port(name: str) -> tuple[str, str, str]:
    """``host:port`` apart (an IPv6 address without brackets has no port)."""
    if name.startswith("["):
        host, _, rest = name.partition("]")
        return host + "]", ":", rest.lstrip(":")
    if name.count(":") == 1:
        return name.partition(":")
    return name, "", ""


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _in_network(address: ipaddress.IPv4Address | ipaddress.IPv6Address, name: str) -> bool:
    try:
        return address in ipaddress.ip_network(name, strict=False)
    except ValueError:
        return False
