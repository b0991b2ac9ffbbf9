"""This app's settings, each with its default (config/settings.py sets them from the environment)."""

import socket

from django.conf import settings


def _get(name, default):
    return getattr(settings, name, default)


def listen_host() -> str:
    return str(_get("RELAY_HOST", "127.0.0.1"))


def listen_port() -> int:
    return int(_get("RELAY_PORT", 2525))


def public_port() -> int:
    """The port mail clients connect to (differs from the listen port behind a port mapping)."""
    return int(_get("RELAY_PUBLIC_PORT", listen_port()))


def hostname() -> str:
    """The relay's name in its greeting, in Received-less bounces and as the EHLO name upstream."""
    return str(_get("RELAY_HOSTNAME", "")) or socket.getfqdn()


def tls_files() -> tuple[str, str]:
    """Certificate chain and key (PEM) for STARTTLS; ("", "") when none is configured."""
    return str(_get("RELAY_TLS_CERT", "")), str(_get("RELAY_TLS_KEY", ""))


def allow_plain_auth_on_loopback() -> bool:
    """AUTH without TLS, only for clients connecting from a loopback address (a CRM on the same machine, tests)."""
    return bool(_get("RELAY_ALLOW_PLAIN_AUTH_ON_LOOPBACK", False))


def max_message_bytes() -> int:
    return int(_get("RELAY_MAX_MESSAGE_BYTES", 25 * 1024 * 1024))


def max_recipients() -> int:
    return int(_get("RELAY_MAX_RECIPIENTS", 100))


def recipients_per_hour() -> int:
    """The default rate limit of a credential (a credential may set its own)."""
    return int(_get("RELAY_RECIPIENTS_PER_HOUR", 500))


def auth_failures_per_ip() -> int:
    """Failed logins from one address in 15 minutes before further logins from it are refused."""
    return int(_get("RELAY_AUTH_FAILURES_PER_IP", 10))


def allow_private_upstreams() -> bool:
    """Upstream servers on private, loopback and link-local addresses (on-premises servers, tests)."""
    return bool(_get("RELAY_ALLOW_PRIVATE_UPSTREAMS", False))


def upstream_timeout() -> float:
    return float(_get("RELAY_UPSTREAM_TIMEOUT_SECONDS", 30))


def queue_hours() -> float:
    """How long a letter the upstream does not take is retried before it bounces."""
    return float(_get("RELAY_QUEUE_HOURS", 24))


def keep_days() -> int:
    """Sent and failed letters are erased from the queue after this many days."""
    return int(_get("RELAY_KEEP_DAYS", 7))
