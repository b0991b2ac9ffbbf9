"""API keys: made once and shown once, kept only as a hash, revocable."""

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from django.utils import timezone

from .models import ApiKey

KEY_PREFIX = "etk_"
PREFIX_LENGTH = 8
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_create(*, project, name: str, read_only: bool = False, created_by=None) -> tuple[ApiKey, str]:
    """Make a key for the project. Returns the row and the key itself, which is
    stored nowhere: the caller shows it once. Keys are 190 random bits, so a
    plain SHA-256 is enough to keep them (no password-style stretching)."""
    while True:
        prefix = secrets.token_hex(PREFIX_LENGTH // 2)
        if not ApiKey.objects.filter(prefix=prefix).exists():
            break
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(24)}"
    row = ApiKey.objects.create(
        project=project,
        name=name,
        prefix=prefix,
        key_hash=_hash(key),
        read_only=read_only,
        created_by=created_by,
    )
    return row, key


def api_key_authenticate(key: str, now: datetime | None = None) -> ApiKey | None:
    """The active key this is, or None. Records when it was last used (at most
    one write a minute per key, so busy integrations do not write on every call)."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    prefix = key[len(KEY_PREFIX) : len(KEY_PREFIX) + PREFIX_LENGTH]
    row = ApiKey.objects.select_related("project").filter(prefix=prefix, revoked_at__isnull=True).first()
    if row is None or not hmac.compare_digest(row.key_hash, _hash(key)):
        return None
    now = now or timezone.now()
    if row.last_used_at is None or row.last_used_at < now - LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=row.pk).update(last_used_at=now)
        row.last_used_at = now
    return row


def api_key_revoke(key: ApiKey, now: datetime | None = None) -> None:
    if key.revoked_at is None:
        key.revoked_at = now or timezone.now()
        key.save(update_fields=["revoked_at"])
