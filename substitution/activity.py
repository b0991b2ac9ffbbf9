"""Activity written behind through Redis: the only thing the collect endpoint's
fast path writes, so a returning visitor's page view costs no database write.

PostgreSQL still decides every allocation. What keeps a written-behind lease
safe: the fast path serves a lease only while its expiry *in the database* is
at least `FAST_PATH_MARGIN` away, and every release of expired leases first
flushes the pending activity. So a lease that was active is never released by
a stale expiry, and the database's expiry is never more than the flush
interval behind the truth.

Without Redis (the embedded default) there is no fast path and every page view
is written through.
"""

import logging
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F

log = logging.getLogger(__name__)

PENDING_LEASES = "et:pending:lease"  # hash lease id -> last activity (unix seconds)
PENDING_SESSIONS = "et:pending:session"  # hash session id -> last seen
PENDING_VIEWS = "et:pending:views"  # hash session id -> page views to add
PENDING_VISITORS = "et:pending:visitor"  # hash visitor id -> last seen
SESSION_URLS = "et:urls:"  # list per session id: URLs viewed since the last flush
PROCESSING = "et:processing:"
ORPHAN_SECONDS = 300


def enabled() -> bool:
    return bool(getattr(settings, "REDIS_URL", ""))


_client = None


def redis():
    """One client per process (redis-py pools its connections)."""
    global _client
    if _client is None:
        import redis as redis_lib

        _client = redis_lib.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _client


# One page view on the fast path, atomically: replace the visitor's cached
# answer only if it is still the one read (a lease taken over meanwhile
# deletes it), and queue the activity, keeping the newest timestamps.
_TOUCH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
local at = tonumber(ARGV[7])
for i, field in ipairs({ARGV[4], ARGV[5], ARGV[6]}) do
  local key = KEYS[i + 1]
  local current = redis.call('HGET', key, field)
  if (not current) or tonumber(current) < at then redis.call('HSET', key, field, ARGV[7]) end
end
if ARGV[8] == '1' then
  redis.call('HINCRBY', KEYS[5], ARGV[5], 1)
  if ARGV[9] ~= '' then
    redis.call('RPUSH', KEYS[6], ARGV[9])
    redis.call('LTRIM', KEYS[6], -10, -1)
    redis.call('EXPIRE', KEYS[6], 86400)
  end
end
return 1
"""
_touch_script = None


def touch(
    *,
    key: str,
    expected: bytes,
    entry: str,
    ttl: int,
    lease_id: int,
    session_id: int,
    visitor_id: int,
    url: str,
    page_view: bool,
    at: float,
) -> bool:
    """Replace a fast-path entry that is still `expected` and record the
    activity; False when the entry changed under us."""
    global _touch_script
    if _touch_script is None:
        _touch_script = redis().register_script(_TOUCH)
    keys = [key, PENDING_LEASES, PENDING_SESSIONS, PENDING_VISITORS, PENDING_VIEWS, f"{SESSION_URLS}{session_id}"]
    args = [expected, entry, ttl, lease_id, session_id, visitor_id, repr(at), "1" if page_view else "0", url]
    return bool(_touch_script(keys=keys, args=args))


def _take(key: str, orphans: bool) -> tuple[list[str], dict[int, float]]:
    """Atomically move a pending hash aside and read it. The claimed copy is
    deleted only after the database has it; a copy left by a crash is taken up
    again (with `orphans`) once it is older than ORPHAN_SECONDS."""
    client = redis()
    claimed = f"{PROCESSING}{key}:{time.time_ns()}"
    names = []
    try:
        client.rename(key, claimed)
        names.append(claimed)
    except Exception as error:  # noqa: BLE001 - "no such key": nothing pending
        if "no such key" not in str(error).lower():
            raise
    if orphans:
        cutoff = time.time_ns() - ORPHAN_SECONDS * 10**9
        for name in client.scan_iter(f"{PROCESSING}{key}:*"):
            name = name.decode()
            if int(name.split(":")[-1]) < cutoff:
                mine = f"{PROCESSING}{key}:{time.time_ns()}"
                try:
                    client.rename(name, mine)  # only one flush wins an orphan
                    names.append(mine)
                except Exception:  # noqa: BLE001 - another flush took it
                    continue
    values: dict[int, float] = {}
    for name in names:
        for field, value in client.hgetall(name).items():
            if key == PENDING_VIEWS:
                values[int(field)] = values.get(int(field), 0) + float(value)
            else:
                values[int(field)] = max(float(value), values.get(int(field), 0))
    return names, values


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def flush(orphans: bool = False) -> int:
    """Apply pending activity to the database: lease last activity and
    expiry, session last seen, page views and last URLs, visitor last seen.
    Returns the number of leases touched."""
    if not enabled():
        return 0
    from tracker.models import Session, Visitor

    from .models import Lease

    claims = {key: _take(key, orphans) for key in (PENDING_LEASES, PENDING_SESSIONS, PENDING_VIEWS, PENDING_VISITORS)}
    leases = claims[PENDING_LEASES][1]
    sessions = claims[PENDING_SESSIONS][1]
    views = claims[PENDING_VIEWS][1]
    visitors = claims[PENDING_VISITORS][1]
    with transaction.atomic():
        rows = Lease.objects.filter(id__in=leases, released_at__isnull=True).select_related("pool")
        for lease in rows.select_for_update():
            at = _at(leases[lease.pk])
            if at > lease.last_activity_at:
                expires = at + timedelta(minutes=lease.pool.hold_minutes)
                Lease.objects.filter(pk=lease.pk).update(last_activity_at=at, expires_at=max(expires, lease.expires_at))
        for session in Session.objects.filter(id__in=set(sessions) | set(views)).select_for_update():
            fields = []
            seen = sessions.get(session.pk)
            if seen and _at(seen) > session.last_seen_at:
                session.last_seen_at = _at(seen)
                fields.append("last_seen_at")
            added = int(views.get(session.pk, 0))
            if added:
                session.page_views = F("page_views") + added
                urls = [u.decode() for u in redis().lrange(f"{SESSION_URLS}{session.pk}", 0, -1)]
                if urls:
                    session.last_urls = (list(session.last_urls or []) + urls)[-10:]
                    fields.append("last_urls")
                fields.append("page_views")
            if fields:
                session.save(update_fields=fields)
        for visitor_id, seen in visitors.items():
            Visitor.objects.filter(pk=visitor_id, last_seen_at__lt=_at(seen)).update(last_seen_at=_at(seen))
    client = redis()
    for session_id in views:
        client.delete(f"{SESSION_URLS}{session_id}")
    for names, _values in claims.values():
        if names:
            client.delete(*names)
    return len(leases)


def visit_key(site_id: int, vid: str) -> str:
    """The fast path's cached answer for one visitor (see tracker.hotpath)."""
    return f"et:visit:{site_id}:{vid}"


def forget_visitor(visitor_id: int) -> None:
    """Drop a visitor's cached answer, e.g. when their lease was taken over."""
    if not enabled():
        return
    from tracker.models import Visitor

    row = Visitor.objects.filter(pk=visitor_id).values_list("site_id", "vid").first()
    if row is not None:
        redis().delete(visit_key(*row))
