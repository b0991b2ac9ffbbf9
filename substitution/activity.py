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

from django.db import transaction
from redis import exceptions as redis_errors

from lib import ratelimit, redis_client, sql
from lib.redis_client import HOT

from .models import Lease

log = logging.getLogger(__name__)

# Every key here carries the hash tag HOT, so on a Redis Cluster the fast
# path's one script finds all its keys in one slot (and declares them).
PENDING_LEASES = f"{HOT}:pending:lease"  # hash lease id -> last activity (unix seconds)
PENDING_SESSIONS = f"{HOT}:pending:session"  # hash session id -> last seen
PENDING_VISITORS = f"{HOT}:pending:visitor"  # hash visitor id -> last seen
# One entry per page view, "<session id> <URL>" (URL possibly empty), in the
# order they happened: a page view costs one append, no read of what is queued.
PAGE_VIEWS = f"{HOT}:pending:pageviews"
# What page views queued before PAGE_VIEWS existed (an upgrade leaves them; read by the flush).
PENDING_VIEWS = f"{HOT}:pending:views"  # hash session id -> page views to add
SESSION_URLS = f"{HOT}:pending:urls"  # hash session id -> JSON list of the last URLs viewed
PROCESSING = f"{HOT}:processing:"
ORPHAN_SECONDS = 300
MARGIN_FRACTION = 0.5  # a cached answer holds while the database's expiry is half a hold away
URLS_KEPT = 10


def enabled() -> bool:
    return redis_client.enabled()


_client = None


def redis():
    """One client per process (redis-py pools its connections): a plain
    Redis, or a RedisCluster with REDIS_CLUSTER on."""
    global _client
    if _client is None:
        _client = redis_client.connect()
    return _client


# A returning visitor's page view in one round trip: count it against the
# client's rate limit (lib.ratelimit's rule, when KEYS[6] is given), read the
# visitor's cached answer, check it still holds (same configuration, database
# expiry far enough, session not timed out, same analytics ids, no new
# campaign), then note the time it was seen and queue the activity: the last
# seen time of the session, the visitor and each lease (one write per hash),
# and the page view with its URL (one append). The time is written, not compared
# with the one queued: two page views of one visitor at the same moment may
# land in either order, and the time kept is then older by the milliseconds
# between them, far inside the flush's allowance (the flush itself never moves
# a time back).
# The cached answer is a hash (ENTRY_FIELDS, written by `remember`): the
# script reads the fields it checks and writes back only the time seen, and
# the addresses go back to the caller as the JSON text stored, with no JSON
# decoded or encoded in Redis (that was a third of the script's time).
# Every key it touches is in KEYS, all with the hash tag HOT.
ENTRY_FIELDS = ("cfg", "db_exp", "hold", "seen", "ga", "ym", "sk", "session", "visitor", "leases", "subs")
_FAST = (
    ratelimit.LUA_STEP
    + """
if #KEYS == 6 then
  local rate = rate_step(KEYS[6], tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]), false)
  if rate[1] == 0 then return {-1, rate[3]} end
end
local e = redis.call('HMGET', KEYS[1], 'cfg', 'db_exp', 'hold', 'seen', 'ga', 'ym', 'sk',
  'session', 'visitor', 'leases', 'subs')
if not e[1] then return {0} end
local now = tonumber(ARGV[1])
local hold = tonumber(e[3])
if e[1] ~= ARGV[2] then return {0} end
if tonumber(e[2]) - now < hold * 60 * tonumber(ARGV[4]) then return {0} end
if now - tonumber(e[4]) >= tonumber(ARGV[3]) then return {0} end
if ARGV[5] ~= '' and ARGV[5] ~= e[5] then return {0} end
if ARGV[6] ~= '' and ARGV[6] ~= e[6] then return {0} end
if ARGV[7] ~= '' and ARGV[7] ~= e[7] then return {0} end
redis.call('HSET', KEYS[1], 'seen', ARGV[1])
redis.call('EXPIRE', KEYS[1], hold * 60)
redis.call('HSET', KEYS[2], e[8], ARGV[1])
redis.call('HSET', KEYS[3], e[9], ARGV[1])
local leases = {}
for lease in string.gmatch(e[10], '%d+') do
  leases[#leases + 1] = lease
  leases[#leases + 1] = ARGV[1]
end
if #leases > 0 then redis.call('HSET', KEYS[4], unpack(leases)) end
if ARGV[8] == '1' then redis.call('RPUSH', KEYS[5], e[8] .. ' ' .. ARGV[9]) end
return {1, e[11], hold}
"""
)
_FAST_SHA = hashlib.sha1(_FAST.encode()).hexdigest()
_FAST_KEYS = (PENDING_SESSIONS, PENDING_VISITORS, PENDING_LEASES, PAGE_VIEWS)


def exchange(*commands) -> list:
    """`commands` in one round trip on this process's client (lib.redis_client.exchange)."""
    return redis_client.exchange(redis(), *commands)


@dataclass(frozen=True)
class Returning:
    """What the fast path checks of a returning visitor's request beyond its
    leases: the tracker's facts about the session it would continue."""

    rate: ratelimit.Count | None  # the client's rate limit; None when the request was counted already
    session_timeout: float  # seconds without activity that end a session
    session_key: str  # a new campaign's key, "" when the request starts none
    ga: str
    ym: str
    page_view: bool  # False for a heartbeat
    url: str


def fast_page_view(*, key: str, fingerprint: str, now: float, returning: Returning):
    """("miss", None) when the slow path must answer (Redis unreachable
    included); ("hit", (subs, hold_minutes)) otherwise. Over the rate limit:
    raises ratelimit.Limited."""
    keys = [key, *_FAST_KEYS]
    args = [
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
    rate = returning.rate
    if rate is not None:
        keys.append(rate.key)
        args += [rate.now_ms, rate.interval_ms, rate.limit]
    if not redis_client.available():
        return "miss", None
    try:
        (result,) = exchange(("EVALSHA", _FAST_SHA, len(keys), *keys, *args))
        if isinstance(result, redis_errors.NoScriptError):  # Redis restarted: send the script itself
            (result,) = exchange(("EVAL", _FAST, len(keys), *keys, *args))
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as error:
        # Redis down: the database answers (written through, limited by the
        # limiter's own fallback) until it is back.
        redis_client.note_outage(error)
        return "miss", None
    if isinstance(result, Exception):
        raise result
    if result[0] == -1:
        raise ratelimit.Limited(ratelimit.Verdict(False, 0, int(result[1])).retry_after)
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
        "db_exp": repr(db_expires_at.timestamp()),
        "hold": hold_minutes,
        "seen": repr(now.timestamp()),
        "ga": session.ga,
        "ym": session.ym,
        "sk": session.key,
        "session": session.id,
        "visitor": visitor_id,
        "leases": " ".join(str(lease_id) for lease_id in lease_ids),
        "subs": json.dumps(subs),
    }
    fields = [part for name in ENTRY_FIELDS for part in (name, entry[name])]
    # Sent without waiting for Redis's answers: the answer to the snippet
    # does not depend on them, and a lost entry only means one more slow path.
    # Written whole (no field of an older answer stays) and expiring after
    # the hold; a page view read between the three finds no answer or a whole
    # one, and takes the slow path or the answer. (Three plain commands cost
    # Redis a third of what one script doing the same did.)
    send_without_reply(("DEL", key), ("HSET", key, *fields), ("EXPIRE", key, hold_minutes * 60))


def forget(key: str) -> None:
    if enabled():
        redis().delete(key)


FORGET_BATCH = 1000


def forget_many(keys: list[str]) -> None:
    """Drop many visitors' cached answers, a thousand keys a round trip (the
    visit keys all carry the hash tag HOT, so one command may name many)."""
    if not enabled():
        return
    for first in range(0, len(keys), FORGET_BATCH):
        (reply,) = exchange(("DEL", *keys[first : first + FORGET_BATCH]))
        if isinstance(reply, Exception):
            raise reply


def _claim(keys: list[str], orphans: bool) -> dict[str, list[str]]:
    """Atomically move each pending key aside (all in one round trip); returns
    the names of the claimed copies of each, oldest first. A claimed copy is
    deleted only after the database has it; a copy left by a crash is taken
    up again (with `orphans`) once it is older than ORPHAN_SECONDS. On a
    single Redis a key's name before the keys had a hash tag (_LEGACY, what
    an upgrade left) is taken too."""
    client = redis()
    names: dict[str, list[str]] = {key: [] for key in keys}
    stems = {key: f"{PROCESSING}{key.removeprefix(HOT + ':')}:" for key in keys}
    if orphans:
        cutoff = time.time_ns() - ORPHAN_SECONDS * 10**9
        for key, stem in stems.items():
            for name in client.scan_iter(f"{stem}*"):
                name = name.decode()
                if int(name.split(":")[-1]) < cutoff:
                    mine = f"{stem}{time.time_ns()}"
                    try:
                        client.rename(name, mine)  # only one flush wins an orphan
                        names[key].append(mine)
                    except redis_errors.ResponseError:  # another flush took it
                        continue
    renames = []
    stamp = time.time_ns()
    for key in keys:
        legacy = _LEGACY.get(key, "")
        for source in [legacy, key] if legacy and not redis_client.is_cluster() else [key]:
            stamp += 1  # each copy its own name, in the order taken
            renames.append((key, source, f"{stems[key]}{stamp}"))
    replies = exchange(*(("RENAME", source, claimed) for _key, source, claimed in renames))
    for (key, _source, claimed), reply in zip(renames, replies, strict=True):
        if isinstance(reply, redis_errors.ResponseError):  # "no such key": nothing pending
            if "no such key" not in str(reply).lower():
                raise reply
            continue
        if isinstance(reply, Exception):
            raise reply
        names[key].append(claimed)
    return names


def _read(claimed: dict[str, list[str]]) -> dict[str, list]:
    """The claimed copies' contents in one round trip: each hash as
    {field: value}, each list (PAGE_VIEWS) as its entries."""
    reads = [(key, name) for key, names in claimed.items() for name in names]
    if not reads:
        return {key: [] for key in claimed}
    commands = [("LRANGE", name, 0, -1) if key == PAGE_VIEWS else ("HGETALL", name) for key, name in reads]
    contents: dict[str, list] = {key: [] for key in claimed}
    for (key, _name), reply in zip(reads, exchange(*commands), strict=True):
        if isinstance(reply, Exception):
            raise reply
        if key == PAGE_VIEWS:
            contents[key].append(reply)
        else:
            pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
            contents[key].append({int(field): value for field, value in pairs})
    return contents


def _page_views(lists: list[list[bytes]]):
    """(session id, URL or "") of each page view queued in the claimed copies, oldest first."""
    for entries in lists:
        for entry in entries:
            session_id, _, url = entry.decode().partition(" ")
            yield int(session_id), url


def _newest(copies: list[dict[int, bytes]]) -> dict[int, float]:
    values: dict[int, float] = {}
    for copy in copies:
        for field, value in copy.items():
            values[field] = max(float(value), values.get(field, 0))
    return values


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


_LEGACY = {
    PENDING_LEASES: "et:pending:lease",
    PENDING_SESSIONS: "et:pending:session",
    PENDING_VIEWS: "et:pending:views",
    PENDING_VISITORS: "et:pending:visitor",
}


def pending_for_leases(lease_ids: list[int]) -> bool:
    """Whether activity written behind is queued for any of these leases (one
    Redis round trip): only then can a flush move their expiry. The fast path
    queues activity only for a lease whose database expiry is half a hold
    away, so none is queued for an expired one after this look. (A copy a
    concurrent flush has claimed is that flush's to apply, as before: this
    release locks its leases after that flush's or skips them.)"""
    if not enabled():
        return False
    names = [PENDING_LEASES]
    if not redis_client.is_cluster():
        names.append(_LEGACY[PENDING_LEASES])  # what an upgrade left, flushed too
    replies = exchange(*(("HMGET", name, *lease_ids) for name in names))
    return any(isinstance(reply, Exception) or any(value is not None for value in reply) for reply in replies)


def flush(orphans: bool = False) -> int:
    """Apply pending activity to the database: lease last activity and
    expiry here, the sessions' and visitors' through the listeners.
    Returns the number of leases touched. Nothing pending costs one Redis
    round trip and no database work."""
    if not enabled():
        return 0
    keys = [PENDING_LEASES, PENDING_SESSIONS, PENDING_VIEWS, PENDING_VISITORS, SESSION_URLS, PAGE_VIEWS]
    claimed = _claim(keys, orphans)
    if not any(claimed.values()):
        return 0
    copies = _read(claimed)
    leases = _newest(copies[PENDING_LEASES])
    views: dict[int, int] = {}
    for copy in copies[PENDING_VIEWS]:
        for session_id, count in copy.items():
            views[session_id] = views.get(session_id, 0) + int(count)
    urls: dict[int, list[str]] = {}
    for copy in copies[SESSION_URLS]:
        for session_id, kept in copy.items():
            urls[session_id] = [*urls.get(session_id, []), *json.loads(kept)][-URLS_KEPT:]
    for session_id, url in _page_views(copies[PAGE_VIEWS]):
        views[session_id] = views.get(session_id, 0) + 1
        if url:
            urls.setdefault(session_id, []).append(url)
    urls = {session_id: kept[-URLS_KEPT:] for session_id, kept in urls.items()}
    legacy_urls = [] if redis_client.is_cluster() else [f"et:urls:{session_id}" for session_id in views]
    # Lists an upgrade left (one per session before the hash), read in one round trip.
    kept_lists = exchange(*(("LRANGE", name, 0, -1) for name in legacy_urls)) if legacy_urls else []
    for name, kept in zip(legacy_urls, kept_lists, strict=True):
        if isinstance(kept, Exception):
            raise kept
        if kept:
            session_id = int(name.rsplit(":", 1)[1])
            urls[session_id] = [*(u.decode() for u in kept), *urls.get(session_id, [])][-URLS_KEPT:]
    with transaction.atomic():
        _apply_leases(leases)
        sessions = {key: _at(value) for key, value in _newest(copies[PENDING_SESSIONS]).items()}
        visitors = {key: _at(value) for key, value in _newest(copies[PENDING_VISITORS]).items()}
        for listener in _flush_listeners:
            listener(sessions, views, urls, visitors)
    done = [name for names in claimed.values() for name in names] + legacy_urls
    exchange(("DEL", *done))
    return len(leases)


def _apply_leases(leases: dict[int, float]) -> None:
    """Each live lease's last activity and expiry moved forward to its newest
    pending activity, in two statements whatever their number: the rows
    locked, then written in one UPDATE. The leases only, in id order, and not
    for a key change: a plain FOR UPDATE through select_related would also lock
    their pool rows for the whole flush, and every new visitor's lease insert
    checks its pool row (FOR KEY SHARE)."""
    if not leases:
        return
    rows = Lease.objects.filter(id__in=leases, released_at__isnull=True).order_by("pk")
    changed = []
    for lease_id, last_activity_at, expires_at, hold_minutes in rows.select_for_update(
        of=("self",), no_key=True
    ).values_list("id", "last_activity_at", "expires_at", "pool__hold_minutes"):
        at = _at(leases[lease_id])
        if at > last_activity_at:
            changed.append((lease_id, at, max(at + timedelta(minutes=hold_minutes), expires_at)))
    sql.update_rows(Lease, ["last_activity_at", "expires_at"], changed)


def send_without_reply(*commands: tuple) -> None:
    """Commands on this process's client whose answers nobody waits for
    (lib.redis_client.send_without_reply): logged, never raised, on failure."""
    redis_client.send_without_reply(redis(), *commands)


def visit_key(site_id: int, vid: str) -> str:
    """The fast path's cached answer for one visitor (see fast_page_view), a
    hash. (Before it was one, the answer was JSON text under "visit:": an
    upgrade leaves those to expire unread.)"""
    return f"{HOT}:answer:{site_id}:{vid}"


def forget_visitor(visitor_id: int) -> None:
    """Drop a visitor's cached answer, e.g. when their lease was taken over."""
    if not enabled():
        return
    row = Lease.objects.filter(visitor_id=visitor_id).values_list("visitor__site_id", "visitor__vid").first()
    if row is not None:
        redis().delete(visit_key(*row))
