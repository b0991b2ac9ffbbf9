"""The two steps of a CSV upload: the file is read and shown as a preview,
and kept (in the cache, for an hour, under a random token tied to the person
and project) until it is confirmed; confirming imports exactly what was shown."""

import secrets

from django.core.cache import cache

from .csv_import import ParsedCosts, parse_costs
from .models import Cost
from .services import Imported, costs_upsert

KEEP_SECONDS = 3600
PREVIEW_ROWS = 50


def _key(user_id: int, project_id: int, token: str) -> str:
    return f"costs-upload:{user_id}:{project_id}:{token}"


def upload_preview(*, user_id: int, project_id: int, data: bytes) -> tuple[ParsedCosts, str]:
    """The parsed file, and the token to confirm it with ("" when it has errors)."""
    parsed = parse_costs(data)
    if not parsed.ok:
        return parsed, ""
    token = secrets.token_urlsafe(16)
    cache.set(_key(user_id, project_id, token), data, KEEP_SECONDS)
    return parsed, token


def upload_confirm(*, user_id: int, project, token: str, origin: str = Cost.Origin.CSV) -> Imported | None:
    """Import a previewed file: all its rows or none. None when the token is
    unknown or expired (then the file is uploaded again)."""
    key = _key(user_id, project.pk, token)
    data = cache.get(key) if token else None
    if data is None:
        return None
    parsed = parse_costs(data)
    if not parsed.ok:
        return None
    imported = costs_upsert(project=project, rows=parsed.rows, origin=origin)
    cache.delete(key)
    return imported
