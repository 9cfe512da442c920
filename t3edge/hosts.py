"""Whether a host, or a URL's host, is this machine (a loopback address or `localhost`)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlparse


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_is_local(url: str) -> bool:
    """Whether `url` points at a server on this machine."""
    host = urlparse(url).hostname
    return host is not None and is_loopback(host)
