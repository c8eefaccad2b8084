"""Whether a host name or address is this machine's loopback: what may be spoken to in plain
HTTP (a node listening, a reader sending a token), since nothing on it leaves the machine."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """``localhost``, or an IPv4/IPv6 loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
