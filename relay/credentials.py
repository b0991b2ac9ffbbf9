"""Relay credentials: made once and shown once, kept as a Django password
hash; logins checked, refused after repeated failures from one address;
recipients per hour limited per credential."""

import ipaddress
import secrets
from datetime import datetime, timedelta
from functools import lru_cache

from django.contrib.auth.hashers import check_password, make_password
from django.utils import timezone

from lib import ratelimit

from . import conf
from .models import Credential

USERNAME_PREFIX = "relay-"
LAST_USED_RESOLUTION = timedelta(minutes=1)
AUTH_FAILURE_WINDOW_SECONDS = 15 * 60


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Checked against when the username is unknown, so that a wrong username
    costs the same time as a wrong password."""
    return make_password(secrets.token_urlsafe(24))


def credential_create(*, project, name: str, created_by=None, **fields) -> tuple[Credential, str]:
    """Make a credential for the project. Returns the row and the password,
    which is stored nowhere: the caller shows it once."""
    password = secrets.token_urlsafe(24)
    while True:
        username = USERNAME_PREFIX + secrets.token_hex(5)
        if not Credential.objects.filter(username=username).exists():
            break
    row = Credential.objects.create(
        project=project,
        name=name,
        username=username,
        password_hash=make_password(password),
        created_by=created_by,
        **fields,
    )
    return row, password


def credential_revoke(credential: Credential, now: datetime | None = None) -> None:
    if credential.revoked_at is None:
        credential.revoked_at = now or timezone.now()
        credential.save(update_fields=["revoked_at"])


def _failures() -> ratelimit.Rule:
    """Failed logins per client address: the one limiter's rule, as sign-ins have."""
    return ratelimit.Rule("relay-auth-ip", conf.auth_failures_per_ip(), AUTH_FAILURE_WINDOW_SECONDS)


def login_blocked(ip: str) -> bool:
    """Too many failed logins from this address lately: refuse without checking."""
    return not ratelimit.peek(_failures(), ip).allowed


def authenticate(username: str, password: str, *, ip: str, now: datetime | None = None) -> Credential | None:
    """The active credential these are, or None (and one more failure for the address)."""
    row = Credential.objects.filter(username=username[:64], revoked_at__isnull=True).first()
    valid = check_password(password, row.password_hash if row else _dummy_hash())
    if row is None or not valid:
        ratelimit.hit(_failures(), ip)
        return None
    now = now or timezone.now()
    if row.last_used_at is None or row.last_used_at < now - LAST_USED_RESOLUTION:
        Credential.objects.filter(pk=row.pk).update(last_used_at=now)
        row.last_used_at = now
    return row


def plain_auth_allowed(peer_ip: str, *, tls: bool) -> bool:
    """AUTH sends the password in the clear without TLS: only over TLS, or
    from a loopback address when the installation allows it."""
    if tls:
        return True
    if not conf.allow_plain_auth_on_loopback():
        return False
    try:
        return ipaddress.ip_address(peer_ip.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def sender_allowed(credential: Credential, address: str) -> bool:
    """The credential's allowed senders (addresses or @domains), or any when none are listed."""
    allowed = [line.strip().lower() for line in credential.allowed_senders.splitlines() if line.strip()]
    if not allowed:
        return True
    address = address.lower()
    domain = "@" + address.rpartition("@")[2]
    return address in allowed or domain in allowed


def take_recipient(credential: Credential) -> bool:
    """Count one recipient against the credential's hourly limit (the one limiter: a burst of the
    limit, then one every hour / limit); False when it is reached."""
    limit = credential.recipients_per_hour or conf.recipients_per_hour()
    return ratelimit.hit(ratelimit.Rule("relay-recipients", limit, 3600), str(credential.pk)).allowed
