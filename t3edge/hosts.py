"""Whether a host, or a URL's host, is this machine."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlparse


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_this_machine(host: str) -> bool:
    """A loopback address, `localhost`, 0.0.0.0 / :: (this machine, to a client) or its own name."""
    if is_loopback(host) or host.lower() == socket.gethostname().lower():
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def url_is_local(url: str) -> bool:
    """Whether `url` points at a server on this machine."""
    host = urlparse(url).hostname
    return host is not None and is_this_machine(host)
