"""HTTP requests in, outbound connections out.

- `client_ip`: who sent a request, behind as many trusted proxies as the
  installation says.
- The outbound guard: a webhook URL, a relay upstream or a mailbox's IMAP
  server is typed by a customer, so it must not become a way to reach the
  service's own network. `refusal` is the one rule for every outbound
  connection: no private, loopback, link-local, shared (CGNAT), reserved or
  multicast address, nor one hidden in an IPv4-mapped, IPv4-compatible,
  NAT64, 6to4 or Teredo IPv6 address. `checked_addresses` resolves a host
  once and applies it to every address; the caller then connects to those
  addresses (pinned), so a DNS answer that changes between the check and the
  connection (rebinding) changes nothing.
"""

import ipaddress
import socket

from django.conf import settings


def client_ip(request) -> str:
    """The client address, believing only as many X-Forwarded-For entries as
    there are trusted proxies in front (a client can forge the rest)."""
    return trusted_client_ip(request.META)


def trusted_client_ip(meta) -> str:
    """client_ip from a request's META or a WSGI environ."""
    remote = meta.get("REMOTE_ADDR", "")
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    forwarded = [p.strip() for p in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
    if len(forwarded) < count:
        return forwarded[0] if forwarded else remote
    return forwarded[-count]


# --- The outbound guard ------------------------------------------------------------

# IPv6 prefixes whose last 32 bits are an IPv4 address a gateway reaches:
# NAT64 (RFC 6052 well-known, RFC 8215 local use) and IPv4-compatible (::a.b.c.d).
NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class AddressRefused(Exception):
    """The host resolves to an address the guard refuses; the message says which and why."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = [ip.ipv4_mapped, ip.sixtofour]
    if ip.teredo:
        found.extend(ip.teredo)
    if any(ip in prefix for prefix in NAT64_PREFIXES) or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [a for a in found if a is not None]


def refusal(ip_text: str, *, allow_private: bool) -> str:
    """Why an outbound connection may not go to this address ("" if it may).
    `allow_private` (an installation's own choice) lets private and loopback
    addresses through, never an address that is not unicast."""
    ip = ipaddress.ip_address(ip_text.split("%", 1)[0])
    candidates = [*(_embedded_ipv4(ip) if ip.version == 6 else []), ip]
    for addr in candidates:
        if addr.is_unspecified or addr.is_multicast:
            return f"{ip} is not a unicast address"
        if allow_private:
            continue
        if addr.is_loopback:
            return f"{ip} is a loopback address"
        if addr.is_link_local:
            return f"{ip} is a link-local address"
        if not addr.is_global:
            return f"{ip} is a private or reserved address"
    return ""


def checked_addresses(host: str, port: int, *, allow_private: bool) -> list[tuple[int, str]]:
    """Every address `host` resolves to, as (family, address), in the
    resolver's order, once each. Raises AddressRefused when any of them is
    refused (a name with one internal address among public ones is refused
    too), socket.gaierror when the name does not resolve. An IPv6 literal
    may come in brackets ("[::1]")."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError:  # a label too long or empty: no such name
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
    seen, addresses = set(), []
    for family, _type, _proto, _name, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.add(sockaddr[0])
            addresses.append((family, sockaddr[0]))
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    for _family, ip in addresses:
        reason = refusal(ip, allow_private=allow_private)
        if reason:
            raise AddressRefused(reason)
    return addresses


def connect_pinned(addresses: list[tuple[int, str]], port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to the first of the checked addresses that answers
    (as socket.create_connection tries a name's addresses); raises the last
    address's OSError."""
    error: OSError | None = None
    for _family, ip in addresses:
        try:
            return socket.create_connection((ip, port), timeout)
        except OSError as exc:
            error = exc
    raise error if error is not None else OSError("no address to connect to")
