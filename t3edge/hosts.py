"""Whether a host, or a URL's host, is this machine."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlparse


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    address = _address(host)
    return host == "localhost" or (address is not None and address.is_loopback)


def is_this_machine(host: str) -> bool:
    """A loopback address, `localhost`, 0.0.0.0 / :: (this machine, to a client) or its own name."""
    address = _address(host)
    return (is_loopback(host) or host.lower() == socket.gethostname().lower()
            or (address is not None and address.is_unspecified))


def url_is_local(url: str) -> bool:
    """Whether `url` points at a server on this machine."""
    host = urlparse(url).hostname
    return host is not None and is_this_machine(host)
