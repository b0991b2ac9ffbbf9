"""Where a mailbox's connections may go.

An account manager types a mailbox's server and port, and "Test connection"
answers at once: unguarded, that would let anyone who manages a project scan
the service's own network. So every IMAP connection (the sync's, the fetching
process's, "Test connection"'s and the IDLE listener's) resolves the host
once, refuses it when any address it resolves to is loopback, private,
link-local, shared (CGNAT), reserved, or such an IPv4 address hidden in IPv6
(IPv4-mapped or -compatible, NAT64, 6to4, Teredo) — `lib.http.refusal`, the
rule the webhooks and the relay follow — and then connects to a checked
address (pinned), while TLS still sends the host's name (SNI) and checks the
certificate against it: a DNS answer that changes between the check and the
connection (rebinding) changes nothing.

A refusal is decided before any packet goes to the host, and its message
names the host only: it is the same whatever the port, open or closed.
An installation whose own mail server is on its network lists that host, as
the mailboxes name it, in IMAP_ALLOWED_PRIVATE_HOSTS (the connection is
still pinned; an address that is not unicast is still refused).
"""

import socket

from django.utils.translation import gettext

from lib import http

from . import conf

Addresses = list[tuple[int, str]]


class HostRefused(Exception):
    """The mailbox's server is on a network mailboxes may not reach."""


def allowed_private(host: str) -> bool:
    """Whether the installation lets this host (as the mailbox names it) be private."""
    name = _bare(host)
    return any(_bare(allowed) == name for allowed in conf.imap_allowed_private_hosts())


def pinned_addresses(host: str, port: int) -> Addresses:
    """The checked addresses to connect to. Raises HostRefused, or
    socket.gaierror when the name does not resolve."""
    try:
        return http.checked_addresses(host, port, allow_private=allowed_private(host))
    except http.AddressRefused:
        raise HostRefused(refused_message(host)) from None


def refused_message(host: str) -> str:
    return gettext(
        "The server %(host)s is refused: it is on a private, loopback or reserved network, and mailboxes "
        "connect only to servers on the internet (unless the installation allows this server in "
        "IMAP_ALLOWED_PRIVATE_HOSTS)."
    ) % {"host": host}


def connect(addresses: Addresses, port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to the first checked address that answers."""
    return http.connect_pinned(addresses, port, timeout)


def _bare(host: str) -> str:
    return host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")
