"""Outbound HTTP for webhooks, Telegram and analytics (standard library only).

A webhook URL is typed by a customer, so it must not become a way to reach
the service's own network: with `guard=True` the host is resolved once, every
address it resolves to is checked (no private, loopback, link-local, shared,
reserved or multicast address, nor one hidden in an IPv4-mapped,
IPv4-compatible, NAT64, 6to4 or Teredo IPv6 address), and the connection is made to a checked address (pinned)
while Host and TLS (SNI and certificate) still use the host's name, so a DNS
answer that changes between the check and the connection (rebinding) changes
nothing. Redirects are not followed. Proxies from the environment are ignored.
"""

import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from lib.http import refusal  # the one address rule of every outbound connection (relay, mailboxes too)

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "emailtrack-integrations/1"


class RequestFailed(Exception):
    """No HTTP answer: the target was refused, unresolvable or unreachable, or timed out.
    `refused` marks a target the guard refused (retrying cannot help)."""

    def __init__(self, message: str, *, refused: bool = False):
        super().__init__(message)
        self.refused = refused


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict

    def text(self, limit: int = 500) -> str:
        return self.body[:limit].decode("utf-8", errors="replace")


def resolve(host: str, port: int) -> list[tuple[int, str]]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RequestFailed(f"cannot resolve {host}: {exc}") from None
    seen, addresses = set(), []
    for family, _type, _proto, _name, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.add(sockaddr[0])
            addresses.append((family, sockaddr[0]))
    if not addresses:
        raise RequestFailed(f"{host} has no address")
    return addresses


def check_url(url: str, *, allow_private: bool) -> None:
    """Raise RequestFailed(refused=True) for a URL a webhook may not target (used when it is saved)."""
    parts = _split(url)
    for _family, ip in resolve(parts.hostname, parts.port or _default_port(parts.scheme)):
        reason = refusal(ip, allow_private=allow_private)
        if reason:
            raise RequestFailed(f"{parts.hostname} resolves to {reason}", refused=True)


def _split(url: str):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RequestFailed("only http and https URLs with a host are allowed", refused=True)
    if parts.username or parts.password:
        raise RequestFailed("credentials in the URL are not allowed", refused=True)
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise RequestFailed("the URL's port is not valid", refused=True) from None
    return parts


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, address, timeout, context):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(url: str, body: bytes, headers: dict, *, timeout: float = 10, guard: bool = False, allow_private=False):
    """POST and return the Answer (any status). Raises RequestFailed when no answer came.
    Error messages name the host, never the URL (a bot token may sit in its path)."""
    parts = _split(url)
    port = parts.port or _default_port(parts.scheme)
    addresses = resolve(parts.hostname, port)
    if guard:
        for _family, ip in addresses:
            reason = refusal(ip, allow_private=allow_private)
            if reason:
                raise RequestFailed(f"{parts.hostname} resolves to {reason}", refused=True)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    headers = {"User-Agent": USER_AGENT, **headers}
    deadline = time.monotonic() + timeout * 2
    last_error = "no address"
    for _family, ip in addresses:
        if parts.scheme == "https":
            conn = _PinnedHTTPSConnection(parts.hostname, port, ip, timeout, ssl.create_default_context())
        else:
            conn = _PinnedHTTPConnection(parts.hostname, port, ip, timeout)
        try:
            conn.request("POST", target, body=body, headers=headers)
            response = conn.getresponse()
            data = _read_limited(response, deadline)
            return Answer(response.status, data, {k.lower(): v for k, v in response.getheaders()})
        except ConnectionRefusedError:
            last_error = f"{parts.hostname} refused the connection"
        except TimeoutError:
            last_error = f"{parts.hostname} did not answer in {timeout:g} s"
        except ssl.SSLError as exc:
            raise RequestFailed(f"TLS with {parts.hostname} failed: {exc.reason or exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            last_error = f"{parts.hostname}: {type(exc).__name__} {exc}"[:300]
        finally:
            conn.close()
    raise RequestFailed(last_error)


def _read_limited(response, deadline: float) -> bytes:
    """The start of the answer: enough to show in a log, never a worker held by a trickle."""
    chunks, size = [], 0
    while size < MAX_RESPONSE_BYTES:
        if time.monotonic() > deadline:
            break
        chunk = response.read(min(8192, MAX_RESPONSE_BYTES - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
