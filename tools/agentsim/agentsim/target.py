"""The safety rule of this workplace: load goes to loopback or to an explicitly allowed lab network only.

The check runs before any packet is sent. A host name is resolved first and EVERY address it
resolves to must pass, so that a name cannot smuggle traffic to another network; the checked
addresses are then the only ones the HTTP client may connect to (client.PinnedResolver), which
also closes the window in which a second lookup could answer differently.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from agentsim.errors import TargetRefused, UsageError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Iterable[str]]

SCHEMES = {"http": 80, "https": 443}


# Where the reference service takes check-ins (run --path changes it).
CHECKIN_PATH = "/agent/checkin"

@dataclass(frozen=True)
class Target:
    """A checked target: the URL as given and the only addresses traffic may go to."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]

    def endpoint(self, path: str) -> str:
        return self.url.rstrip("/") + path


def parse_allowed_networks(values: Sequence[str]) -> tuple[IPNetwork, ...]:
    """Parse --allow-network values; only private networks qualify as a lab network."""
    networks = []
    for value in values:
        try:
            network = ipaddress.ip_network(value.strip(), strict=True)
        except ValueError as exc:
            raise UsageError(f"--allow-network {value!r} is not a network in CIDR notation: {exc}") from None
        # A lab network is private by definition; this keeps 0.0.0.0/0 or a public range from
        # switching the rule off by accident.
        if not network.is_private:
            raise UsageError(
                f"--allow-network {value!r} is not a private network; only a lab network "
                "(e.g. 172.28.0.0/16) can be allowed"
            )
        networks.append(network)
    return tuple(networks)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def check_target(url: str, allowed: Sequence[IPNetwork] = (), resolver: Resolver = system_resolver) -> Target:
    """Return the checked Target, or raise TargetRefused naming the target and the offending address."""
    scheme, host, port = _split_url(url)
    literal = _as_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            resolved = list(resolver(host, port))
        except (OSError, UnicodeError) as exc:
            raise TargetRefused(f"--url {url}: cannot resolve host {host!r} ({exc}); nothing was sent") from None
        if not resolved:
            raise TargetRefused(f"--url {url}: host {host!r} resolves to no address; nothing was sent")
        addresses = []
        for text in resolved:
            address = _as_address(text)
            if address is None:
                raise TargetRefused(f"--url {url}: host {host!r} resolved to {text!r}, which is not an IP address")
            addresses.append(address)
    for address in addresses:
        if not is_allowed(address, allowed):
            via = "" if literal is not None else f" (host {host!r} resolves to {address})"
            nets = ", ".join(str(n) for n in allowed) or "none given"
            raise TargetRefused(
                f"--url {url} refused{via}: {address} is neither loopback (127.0.0.0/8, ::1) nor inside an "
                f"allowed lab network (--allow-network: {nets}); nothing was sent"
            )
    unique = tuple(dict.fromkeys(str(a) for a in addresses))
    return Target(url=url, scheme=scheme, host=host, port=port, addresses=unique)


def is_allowed(address: IPAddress, allowed: Sequence[IPNetwork]) -> bool:
    # ::ffff:8.8.8.8 reaches 8.8.8.8, so a mapped address is judged as the IPv4 one it maps.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return True
    return any(address.version == network.version and address in network for network in allowed)


def _split_url(url: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"--url {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise UsageError(f"--url {url!r} must start with http:// or https://")
    if not parts.hostname:
        raise UsageError(f"--url {url!r} has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"--url {url!r} must be a base URL without path or query (the tool adds /agent/checkin)")
    return parts.scheme, parts.hostname, port or SCHEMES[parts.scheme]


def _as_address(text: str) -> IPAddress | None:
    # A scoped IPv6 address (fe80::1%eth0) is judged without its zone.
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None

