"""Activity written behind through Redis: the only thing the collect endpoint's
fast path writes, so a returning visitor's page view costs no database write.

The fast path: after a write-through page view the answer is cached per
visitor. A later request is answered from that entry only when nothing
decides differently: same configuration, same session (not timed out, no new
campaign, no new analytics ids: the facts the tracker passes), and leases
whose expiry *in the database* is still at least half their hold away. The
check and the update run in one Lua script, atomically, so a lease taken
over meanwhile (which deletes the entry) is never brought back by a racing
page view.

PostgreSQL still decides every allocation. What keeps a written-behind lease
safe: the fast path serves a lease only while its expiry *in the database* is
at least `FAST_PATH_MARGIN` away, and every release of expired leases first
flushes the pending activity. So a lease that was active is never released by
a stale expiry, and the database's expiry is never more than the flush
interval behind the truth.

The session and visitor activity queued beside a lease's is the tracker's:
a flush hands it to the listeners subscribed with `on_flush` (the tracker
writes its own rows), in the same transaction.

Without Redis (the embedded default) there is no fast path and every page view
is written through.
"""

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis as redis_lib
from django.conf import settings
from django.db import transaction
from redis import exceptions as redis_errors

from .models import Lease

log = logging.getLogger(__name__)

PENDING_LEASES = "et:pending:lease"  # hash lease id -> last activity (unix seconds)
PENDING_SESSIONS = "et:pending:session"  # hash session id -> last seen
PENDING_VIEWS = "et:pending:views"  # hash session id -> page views to add
PENDING_VISITORS = "et:pending:visitor"  # hash visitor id -> last seen
SESSION_URLS = "et:urls:"  # list per session id: URLs viewed since the last flush
PROCESSING = "et:processing:"
ORPHAN_SECONDS = 300
MARGIN_FRACTION = 0.5  # a cached answer holds while the database's expiry is half a hold away


def enabled() -> bool:
    return bool(getattr(settings, "REDIS_URL", ""))


_client = None


def redis():
    """One client per process (redis-py pools its connections)."""
    global _client
    if _client is None:
        _client = redis_lib.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _client


# A returning visitor's page view in one round trip: count it against the
# client's rate limit, read the visitor's cached answer, check it still holds
# (same configuration, database expiry far enough, session not timed out, same
# analytics ids, no new campaign), then store it back and queue the activity
# keeping the newest timestamps. Keys beyond KEYS are the pending hashes and
# the session's URL list (a single Redis, not a cluster).
_FAST = (
    """
if KEYS[2] ~= '' then
  local n = redis.call('INCR', KEYS[2])
  if n == 1 then redis.call('EXPIRE', KEYS[2], 70) end
  if n > tonumber(ARGV[1]) then return {-1} end
end
local raw = redis.call('GET', KEYS[1])
if not raw then return {0} end
local e = cjson.decode(raw)
local now = tonumber(ARGV[2])
if e.cfg ~= ARGV[3] then return {0} end
if e.db_exp - now < e.hold * 60 * tonumber(ARGV[5]) then return {0} end
if now - e.seen >= tonumber(ARGV[4]) then return {0} end
if ARGV[6] ~= '' and ARGV[6] ~= e.ga then return {0} end
if ARGV[7] ~= '' and ARGV[7] ~= e.ym then return {0} end
if ARGV[8] ~= '' and ARGV[8] ~= e.sk then return {0} end
e.seen = now
redis.call('SET', KEYS[1], cjson.encode(e), 'EX', e.hold * 60)
local marks = {{'"""
    + PENDING_SESSIONS
    + """', e.session}, {'"""
    + PENDING_VISITORS
    + """', e.visitor}}
for _, lease in ipairs(e.leases) do table.insert(marks, {'"""
    + PENDING_LEASES
    + """', lease}) end
for _, mark in ipairs(marks) do
  local current = redis.call('HGET', mark[1], mark[2])
  if (not current) or tonumber(current) < now then redis.call('HSET', mark[1], mark[2], ARGV[2]) end
end
if ARGV[9] == '1' then
  redis.call('HINCRBY', '"""
    + PENDING_VIEWS
    + """', e.session, 1)
  if ARGV[10] ~= '' then
    local urls = '"""
    + SESSION_URLS
    + """' .. e.session
    redis.call('RPUSH', urls, ARGV[10])
    redis.call('LTRIM', urls, -10, -1)
    redis.call('EXPIRE', urls, 86400)
  end
end
return {1, cjson.encode(e.subs), e.hold}
"""
)
_FAST_SHA = hashlib.sha1(_FAST.encode()).hexdigest()


def exchange(*commands) -> list:
    """Send `commands` in one write and read their replies: one round trip, as a
    pipeline, without redis-py's per-call machinery (the collect endpoint pays
    for it on every page view). An error reply is returned as its exception.
    A pooled connection that broke meanwhile (Redis restarted) is replaced
    once, as redis-py's own retry would."""
    try:
        return _exchange_once(commands)
    except redis_errors.ConnectionError:
        return _exchange_once(commands)


def _exchange_once(commands) -> list:
    pool = redis().connection_pool
    connection = pool.get_connection()
    try:
        connection.send_packed_command(connection.pack_commands(commands))
        replies = []
        for _command in commands:
            try:
                replies.append(connection.read_response())
            except redis_errors.ResponseError as error:
                replies.append(error)
        return replies
    except BaseException:
        connection.disconnect()  # not reused half-read
        raise
    finally:
        pool.release(connection)


@dataclass(frozen=True)
class Returning:
    """What the fast path checks of a returning visitor's request beyond its
    leases: the tracker's facts about the session it would continue."""

    rate_bucket: str  # "" when the request was counted already
    rate_limit: int
    session_timeout: float  # seconds without activity that end a session
    session_key: str  # a new campaign's key, "" when the request starts none
    ga: str
    ym: str
    page_view: bool  # False for a heartbeat
    url: str


def fast_page_view(*, key: str, fingerprint: str, now: float, returning: Returning):
    """("limited", None) over the rate limit; ("miss", None) when the slow path
    must answer; ("hit", (subs, hold_minutes)) otherwise."""
    args = [
        returning.rate_limit,
        repr(now),
        fingerprint,
        returning.session_timeout,
        MARGIN_FRACTION,
        returning.ga,
        returning.ym,
        returning.session_key,
        "1" if returning.page_view else "0",
        returning.url,
    ]
    (result,) = exchange(("EVALSHA", _FAST_SHA, 2, key, returning.rate_bucket, *args))
    if isinstance(result, redis_errors.NoScriptError):  # Redis restarted: send the script itself
        (result,) = exchange(("EVAL", _FAST, 2, key, returning.rate_bucket, *args))
    if isinstance(result, Exception):
        raise result
    if result[0] == -1:
        return "limited", None
    if result[0] == 0:
        return "miss", None
    return "hit", (json.loads(result[1]), int(result[2]))


def remember(
    *,
    key: str,
    fingerprint: str,
    lease_ids: list[int],
    visitor_id: int,
    session,
    subs: list[dict],
    hold_minutes: int,
    db_expires_at: datetime,
    now: datetime,
) -> None:
    """Cache a write-through answer for the visitor's next page views.
    `session` holds the tracker's facts: id, key (its campaign), ga, ym."""
    if not enabled():
        return
    entry = {
        "cfg": fingerprint,
        "leases": lease_ids,
        "visitor": visitor_id,
        "session": session.id,
        "sk": session.key,
        "ga": session.ga,
        "ym": session.ym,
        "subs": subs,
        "hold": hold_minutes,
        "db_exp": db_expires_at.timestamp(),
        "seen": now.timestamp(),
    }
    # Sent without waiting for Redis's answer: the answer to the snippet
    # does not depend on it, and a lost entry only means one more slow path.
    send_without_reply("SET", key, json.dumps(entry), "EX", hold_minutes * 60)


def forget(key: str) -> None:
    if enabled():
        redis().delete(key)


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


_flush_listeners: list = []


def on_flush(listener) -> None:
    """`listener(sessions, views, urls, visitors)` is called by every flush,
    inside its transaction, with the session and visitor activity written
    behind: last seen (Unix seconds) by session id, page views to add and URLs
    viewed by session id, last seen by visitor id."""
    if listener not in _flush_listeners:
        _flush_listeners.append(listener)


def flush(orphans: bool = False) -> int:
    """Apply pending activity to the database: lease last activity and
    expiry here, the sessions' and visitors' through the listeners.
    Returns the number of leases touched."""
    if not enabled():
        return 0
    claims = {key: _take(key, orphans) for key in (PENDING_LEASES, PENDING_SESSIONS, PENDING_VIEWS, PENDING_VISITORS)}
    leases = claims[PENDING_LEASES][1]
    views = claims[PENDING_VIEWS][1]
    client = redis()
    urls = {
        session_id: [u.decode() for u in client.lrange(f"{SESSION_URLS}{session_id}", 0, -1)] for session_id in views
    }
    with transaction.atomic():
        rows = Lease.objects.filter(id__in=leases, released_at__isnull=True).select_related("pool")
        for lease in rows.select_for_update():
            at = _at(leases[lease.pk])
            if at > lease.last_activity_at:
                expires = at + timedelta(minutes=lease.pool.hold_minutes)
                Lease.objects.filter(pk=lease.pk).update(last_activity_at=at, expires_at=max(expires, lease.expires_at))
        sessions = {key: _at(value) for key, value in claims[PENDING_SESSIONS][1].items()}
        visitors = {key: _at(value) for key, value in claims[PENDING_VISITORS][1].items()}
        for listener in _flush_listeners:
            listener(sessions, {key: int(value) for key, value in views.items()}, urls, visitors)
    for session_id in views:
        client.delete(f"{SESSION_URLS}{session_id}")
    for names, _values in claims.values():
        if names:
            client.delete(*names)
    return len(leases)


def send_without_reply(*command) -> None:
    """Send one command whose answer nobody waits for (CLIENT REPLY SKIP):
    a cache write that costs a request no round trip. A failure is logged,
    never raised: the cache only saves work, the database has the truth."""
    pool = redis().connection_pool
    try:
        connection = pool.get_connection()
    except Exception:  # noqa: BLE001 - Redis unreachable: the next request takes the slow path
        log.warning("Redis unreachable: a cache write was skipped", exc_info=True)
        return
    try:
        connection.send_packed_command(connection.pack_commands([("CLIENT", "REPLY", "SKIP"), command]))
    except Exception:  # noqa: BLE001 - as above; the connection is not reused half-written
        connection.disconnect()
        log.warning("Redis write failed: a cache write was skipped", exc_info=True)
    finally:
        pool.release(connection)


def visit_key(site_id: int, vid: str) -> str:
    """The fast path's cached answer for one visitor (see fast_page_view)."""
    return f"et:visit:{site_id}:{vid}"


def forget_visitor(visitor_id: int) -> None:
    """Drop a visitor's cached answer, e.g. when their lease was taken over."""
    if not enabled():
        return
    row = Lease.objects.filter(visitor_id=visitor_id).values_list("visitor__site_id", "visitor__vid").first()
    if row is not None:
        redis().delete(visit_key(*row))
