"""Which addresses the node may fetch a roaming partner's API from, without I/O (docs/ocpi.md,
"Registration"). A partner names the URL the node GETs, so by default only globally routable
addresses are fetched: a URL must not make the node reach its own loopback, its private network
or the cloud's metadata service and tell what answered. `BUREAU_OCPI_PARTNER_NETWORKS` adds
networks for labs and private peering."""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598, carrier-grade NAT: neither private nor global
# the first kind an address is of names it in a refusal
KINDS = ("unspecified", "loopback", "link_local", "multicast", "private", "site_local", "reserved")


def parse_networks(text: str) -> tuple[Network, ...]:
    """The networks of a comma-separated CIDR list (`127.0.0.0/8,10.20.0.0/16`; a bare address is
    its /32 or /128); ValueError naming the first bad item."""
    out = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        out.append(ipaddress.ip_network(item))  # ValueError: "... has host bits set", "... does not appear to be ..."
    return tuple(out)


def is_literal(host: str) -> bool:
    """Whether a URL's host is an IP address rather than a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _carried(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (::ffff:a.b.c.d, 6to4): it reaches where that one does."""
    if isinstance(ip, ipaddress.IPv6Address):
        return ip.ipv4_mapped or ip.sixtofour
    return None


def refusal(address: str, allowed: tuple[Network, ...] = ()) -> str | None:
    """None when the node may fetch from `address` (an IP address as text): a globally routable
    one, or one in `allowed`; otherwise the kind of address it is ("loopback", "private", ...)."""
    ip = ipaddress.ip_address(address)
    carried = _carried(ip)
    if any(a in n for a in (ip, carried) if a is not None for n in allowed):
        return None
    judged = carried or ip
    for kind in KINDS:
        if getattr(judged, "is_" + kind, False):
            return kind.replace("_", "-")
    if judged in SHARED:
        return "shared (carrier-grade NAT)"
    return None if judged.is_global else "not globally routable"
