"""Who is asking: the client address and scheme, trusting forwarding headers only from proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from tallow.config import Network


def _trusted(address: str, proxies: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(
    peer: str, forwarded_for: str | None, proxies: tuple[Network, ...]
) -> tuple[str, bool]:
    """(client address, whether the direct peer is a trusted proxy).

    X-Forwarded-For is read right to left, skipping trusted proxies, so a client cannot forge its
    address by sending its own header through the proxy.
    """
    if not proxies or not _trusted(peer, proxies):
        return peer, False
    if forwarded_for:
        for hop in reversed([part.strip() for part in forwarded_for.split(",")]):
            if hop and not _trusted(hop, proxies):
                return hop, True
    return peer, True
