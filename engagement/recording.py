"""How a pixel fetch or a click reaches the database without slowing its answer.

With Redis, the endpoint appends the event to a Redis stream (one XADD) and
answers; drainers read the stream through a consumer group in batches, store
each batch (engagement.storing) and only then acknowledge and delete its
entries. A drainer that dies mid-batch leaves its entries pending: the next
drainer under the same name reads them again, another takes them over after
RECLAIM_IDLE_MS. Each event row keeps its stream entry id (unique), so an
entry read twice is stored once.

Without Redis (the embedded default), or when Redis cannot take the event,
the event is stored at once, synchronously: slower, never lost.
"""

import hashlib
import logging
import os
import socket
import threading
import time

from django.conf import settings
from redis import exceptions as redis_errors

from substitution import activity

from . import storing

log = logging.getLogger(__name__)

STREAM = "et:eng:events"
GROUP = "drainers"
RECLAIM_IDLE_MS = 60_000
RATE_KEY = "et:eng:rate:"
# Count the event against its recipient's minute, and queue it while under the cap.
_QUEUE = """
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('EXPIRE', KEYS[2], 120) end
if n > tonumber(ARGV[1]) then return 0 end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
return 1
"""
_QUEUE_SHA = hashlib.sha1(_QUEUE.encode()).hexdigest()


def enabled() -> bool:
    return activity.enabled()


def redis():
    """The process's Redis client (shared with collect's write-behind)."""
    return activity.redis()


def record(*, kind: int, recipient_id: int, link_id: int, method: str, user_agent: str, ip: str, at: float) -> None:
    """Queue one event (or store it now without Redis). Never raises. A
    recipient's token replayed more than ENGAGEMENT_EVENTS_PER_RECIPIENT_PER_MINUTE
    times a minute (a flood, not a reader) has the rest of that minute's events
    dropped: the endpoint still answers them."""
    fields = {
        "k": kind,
        "r": recipient_id,
        "l": link_id,
        "m": method[:8],
        "u": user_agent[: storing.MAX_USER_AGENT],
        "i": ip[:64],
        "t": f"{at:.3f}",
    }
    if enabled():
        args = [settings.ENGAGEMENT_EVENTS_PER_RECIPIENT_PER_MINUTE, *(i for pair in fields.items() for i in pair)]
        rate_key = f"{RATE_KEY}{recipient_id}:{int(at // 60)}"
        try:
            # One round trip without redis-py's per-call machinery (as collect does).
            [reply] = activity.exchange(("EVALSHA", _QUEUE_SHA, 2, STREAM, rate_key, *args))
            if isinstance(reply, redis_errors.NoScriptError):  # Redis restarted: send the script itself
                [reply] = activity.exchange(("EVAL", _QUEUE, 2, STREAM, rate_key, *args))
            if not isinstance(reply, Exception):
                return
            log.warning("Engagement event stored synchronously: Redis answered %s", reply)
        except redis_errors.RedisError:
            log.warning("Engagement event stored synchronously: Redis refused it", exc_info=True)
    try:
        storing.store([(None, {key: str(value) for key, value in fields.items()})])
    except Exception:  # noqa: BLE001 - the visitor still gets their answer
        log.exception("Engagement event could not be stored")


def ensure_group(client) -> None:
    try:
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis_errors.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def decoded(entries) -> list[tuple[str, dict]]:
    out = []
    for entry_id, fields in entries or []:
        if not fields:  # deleted meanwhile
            continue
        out.append((entry_id.decode(), {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()}))
    return out


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def drain_once(*, consumer: str | None = None, count: int | None = None) -> int:
    """Store one batch from the stream: this consumer's own unacknowledged
    entries first, then entries a dead drainer left, then new ones. Returns
    how many entries were handled."""
    client = redis()
    consumer = consumer or consumer_name()
    count = count or settings.ENGAGEMENT_DRAIN_BATCH
    ensure_group(client)
    entries = decoded(client.xreadgroup(GROUP, consumer, {STREAM: "0"}, count=count)[0][1])
    if not entries:
        claimed = client.xautoclaim(STREAM, GROUP, consumer, RECLAIM_IDLE_MS, "0-0", count=count)
        entries = decoded(claimed[1])
    if not entries:
        fresh = client.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=count)
        entries = decoded(fresh[0][1]) if fresh else []
    if not entries:
        return 0
    storing.store(entries)
    ids = [entry_id for entry_id, _fields in entries]
    client.xack(STREAM, GROUP, *ids)
    client.xdel(STREAM, *ids)
    return len(entries)


def drain(*, consumer: str | None = None, seconds: float | None = None) -> int:
    """Batches until the stream is empty (or `seconds` have passed)."""
    if not enabled():
        return 0
    deadline = time.monotonic() + seconds if seconds else None
    total = 0
    while True:
        handled = drain_once(consumer=consumer)
        total += handled
        if not handled or (deadline and time.monotonic() > deadline):
            return total


def drain_forever(*, stop: threading.Event, consumer: str | None = None, idle_seconds: float = 0.5) -> None:
    """The drainer's loop (the drain_engagement_events command): a failing
    batch is retried after a pause; its entries stay pending meanwhile."""
    consumer = consumer or consumer_name()
    while not stop.is_set():
        try:
            handled = drain_once(consumer=consumer)
        except Exception:  # noqa: BLE001 - keep draining after a database or Redis hiccup
            log.exception("Engagement drain failed; retrying")
            handled = 0
            stop.wait(2)
        if not handled:
            stop.wait(idle_seconds)


def pending_count() -> int:
    """Entries not stored yet (queued or read but unacknowledged)."""
    if not enabled():
        return 0
    return int(redis().xlen(STREAM))
