"""Where notifications may go: never to this host, its network or cloud metadata.

A Slack or webhook URL is typed by an administrator but points the worker at any
address, and the worker can reach what users cannot (metadata services, admin ports on
the private network). Targets resolving to loopback, private, link-local, unspecified,
multicast or reserved addresses are refused, unless ``MONITOR_ALLOW_PRIVATE_WEBHOOKS``
is true (a receiver inside the network on purpose).

Checked twice: when a channel is saved (admin, ``apply_config``), on the addresses the
name resolves to then; and on every send, on the address actually connected to, so a
name that later resolves elsewhere (DNS rebinding) is refused too.
"""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def private_webhooks_allowed() -> bool:
    return bool(settings.MONITOR_ALLOW_PRIVATE_WEBHOOKS)


def is_internal(address: IpAddress) -> bool:
    """Loopback, private, link-local (cloud metadata), unspecified, multicast or reserved."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified
            or address.is_multicast or address.is_reserved)


def address_problem(text: str) -> str | None:
    """Why connecting to the IP address ``text`` is refused; None when it is public."""
    if private_webhooks_allowed():
        return None
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return "is not an IP address"
    if is_internal(address):
        return (f"resolves to the internal address {address}; receivers on loopback, private or link-local "
                "addresses are refused (MONITOR_ALLOW_PRIVATE_WEBHOOKS=true allows them)")
    return None


def url_target_problem(url: str) -> str | None:
    """Why a webhook URL is refused because of where it points; None if it may be used.

    A name that does not resolve now is accepted here (the receiver may be reachable
    only from the workers) and checked again, on the connected address, at each send."""
    if private_webhooks_allowed():
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return "is not a valid URL"
    if not host:
        return "has no host name"
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError):
        return None
    for info in infos:
        problem = address_problem(str(info[4][0]))
        if problem is not None:
            return problem
    return None
