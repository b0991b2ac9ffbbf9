"""Where a tracked link leads: its stored URL as an ASCII Location header
(international domain names in IDNA, other characters percent-encoded).
Links never change once made, so each process remembers the ones it has
looked up (up to CACHE_SIZE) and a click costs no query after the first."""

from urllib.parse import urlsplit, urlunsplit

from django.db import connections
from django.utils.encoding import iri_to_uri

from .models import Link

CACHE_SIZE = 50_000
HONEYPOT_TARGET = "/"
_cache: dict[int, str] = {}


def ascii_url(url: str) -> str | None:
    try:
        parts = urlsplit(url.strip())
        netloc = parts.netloc
        if not netloc.isascii():
            # The host as written (any case: IDNA folds it), between the user info and the port.
            userinfo, at, host_port = netloc.rpartition("@")
            host, colon, port = host_port.partition(":")
            netloc = f"{userinfo}{at}{host.encode('idna').decode('ascii')}{colon}{port}"
    except (ValueError, UnicodeError):
        return None
    result = iri_to_uri(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))
    if not result.isascii() or any(c in result for c in "\r\n\x00"):
        return None
    return result


def close_stale_connections() -> None:
    """What Django does around a request (a connection past its age or broken
    is closed), for the route that answers before Django; a connection inside
    a transaction block (a test's) is left alone."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def location(link_id: int) -> str | None:
    """The link's Location; only a link not seen yet by this process costs a
    query (with the connection checked before and after, as around a request)."""
    url = _cache.get(link_id)
    if url is None:
        close_stale_connections()
        try:
            stored = Link.objects.filter(pk=link_id).values_list("url", flat=True).first()
        finally:
            close_stale_connections()
        url = ascii_url(stored) if stored else None
        if url is None:
            return None
        if len(_cache) >= CACHE_SIZE:
            _cache.clear()
        _cache[link_id] = url
    return url
