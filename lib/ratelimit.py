"""One rate limiter for the whole service: collect, the API and sign-ins.

The rule is GCRA (the generic cell rate algorithm, a token bucket kept as one
number): a rule of `limit` requests per `period` lets a burst of `limit`
through, then one request every `period / limit` (the interval). Each key
keeps one time, its "theoretical arrival time" (TAT): a request at `now` is
allowed when `max(TAT, now) + interval - limit * interval <= now`, and then
moves the TAT on by one interval. So there is no window to turn: `limit`
requests at 12:00:59 leave nothing for 12:01:00 (a fixed minute window let
`2 * limit` through there), and Retry-After is exact: the time until the
next request would be allowed.

The rule is written twice, with the same integer-millisecond arithmetic:
in Lua for Redis (`LUA_STEP`, which the collect endpoint's hot-path script
embeds, so a returning visitor's page view stays one round trip), and in
Python over Django's cache for the embedded default (a local-memory cache:
one process, so a lock makes the read and the write one step). A kept
library (`limits`, django-ratelimit) cannot fold its check into that script.

The time comes from `clock` (Unix seconds), which tests replace. When Redis
cannot be reached, each process counts by the same rule in its own memory
(`_Local`) until Redis answers again (lib.redis_client.available): a Redis
outage neither takes the service down nor lifts the limits.
"""

import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from redis import exceptions as redis_errors

from lib import redis_client

log = logging.getLogger(__name__)

clock = time.time

# One step of the rule on Redis, atomically (inside a script): the key's TAT
# read, checked and, unless `dry`, moved on. Returns {allowed 0/1, requests
# left, milliseconds until the next one is allowed}.
LUA_STEP = """
local function rate_step(key, now, interval, limit, dry)
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - interval * limit
  if allow_at > now then return {0, 0, allow_at - now} end
  if not dry then redis.call('SET', key, new_tat, 'PX', new_tat - now) end
  local after = new_tat + interval - interval * limit - now
  if after < 0 then after = 0 end
  return {1, math.floor((now - allow_at) / interval), after}
end
"""
_SCRIPT = (
    LUA_STEP + "return rate_step(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1')\n"
)
_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()


@dataclass(frozen=True)
class Rule:
    """`limit` requests per `period` seconds for each key of one kind (`name`).
    `tag`: a hash tag shared with the other keys of one Redis script
    (lib.redis_client.HOT); without one each key has its own slot."""

    name: str
    limit: int
    period: float
    tag: str = ""

    @property
    def interval_ms(self) -> int:
        return max(1, math.ceil(self.period * 1000 / max(self.limit, 1)))

    def key(self, who: str) -> str:
        if self.tag:
            return f"rl:{self.tag}:{self.name}:{who}"
        return f"rl:{{{self.name}:{who}}}"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    remaining: int  # requests still allowed at once after this one
    retry_after_ms: int  # until the next request is allowed (0: it is now)

    @property
    def retry_after(self) -> int:
        """Whole seconds, for a Retry-After header (at least 1)."""
        return max(1, math.ceil(self.retry_after_ms / 1000))

    @classmethod
    def of_reply(cls, reply) -> "Verdict":
        allowed, remaining, after = (int(value) for value in reply)
        return cls(bool(allowed), remaining, after)


class Limited(Exception):
    """Over a rule's limit; `retry_after` in whole seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"rate limited, retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Count:
    """One request to count inside another Redis script (the collect
    endpoint's): its key and LUA_STEP's arguments."""

    key: str
    now_ms: int
    interval_ms: int
    limit: int


def now_ms() -> int:
    return int(clock() * 1000)


def count_of(rule: Rule, who: str) -> Count:
    return Count(rule.key(who), now_ms(), rule.interval_ms, rule.limit)


def step(tat: int | None, now: int, interval: int, limit: int) -> tuple[Verdict, int]:
    """The rule (as LUA_STEP): the verdict for a request at `now` and the TAT after it."""
    tat = max(now if tat is None else tat, now)
    new_tat = tat + interval
    allow_at = new_tat - interval * limit
    if allow_at > now:
        return Verdict(False, 0, allow_at - now), tat
    after = max(0, new_tat + interval - interval * limit - now)
    return Verdict(True, (now - allow_at) // interval, after), new_tat


def hit(rule: Rule, who: str) -> Verdict:
    """Count one request of `who` against `rule`; a refused one is not counted."""
    return hit_later(rule, who).verdict()


class Counting:
    """A request being counted or peeked at (hit_later): its verdict, once read."""

    def __init__(self, count: Count, dry: bool, verdict: Verdict | None = None, pending=None):
        self._count = count
        self._dry = dry
        self._verdict = verdict
        self._pending = pending

    def verdict(self) -> Verdict:
        if self._verdict is None:
            self._verdict = _verdict_of_redis(self._pending, self._count, self._dry)
            self._pending = None
        return self._verdict


def hit_later(rule: Rule, who: str) -> Counting:
    """hit(), with Redis's verdict read only when asked for (Counting.verdict):
    the request is counted now, and the caller works meanwhile instead of
    waiting for the round trip (the collect endpoint builds its write
    while the verdict comes; nothing is written or answered before it)."""
    return _counting(rule, who, dry=False)


def peek(rule: Rule, who: str) -> Verdict:
    """Would one more request of `who` be allowed? Counts nothing."""
    return _counting(rule, who, dry=True).verdict()


def check(rule: Rule, who: str) -> Verdict:
    """hit(), raising Limited when over the limit."""
    verdict = hit(rule, who)
    if not verdict.allowed:
        raise Limited(verdict.retry_after)
    return verdict


def reset(rule: Rule, who: str) -> None:
    """Forget `who`'s requests (a successful sign-in clears its failures)."""
    if redis_client.enabled():
        try:
            _redis().delete(rule.key(who))
        except redis_errors.RedisError:
            log.warning("Rate limit not reset: Redis is unavailable", exc_info=True)
        return
    cache.delete(rule.key(who))


_lock = threading.Lock()
_clients: dict = {}


def _redis():
    """One client per REDIS_URL (and Cluster setting) per process."""
    which = (settings.REDIS_URL, redis_client.is_cluster())
    if which not in _clients:
        _clients[which] = redis_client.connect()
    return _clients[which]


class _Local:
    """The process's own TATs, while Redis is unreachable: the same rule,
    counted per process instead of across them."""

    def __init__(self):
        self.tats: dict[str, tuple[int, float]] = {}  # key -> (TAT, monotonic expiry)

    def get(self, key):
        found = self.tats.get(key)
        return found[0] if found and found[1] > time.monotonic() else None

    def set(self, key, tat, timeout):
        if len(self.tats) > 100_000:  # an outage's worth of keys, bounded
            now = time.monotonic()
            self.tats = {k: v for k, v in self.tats.items() if v[1] > now}
        self.tats[key] = (tat, time.monotonic() + timeout)


_local = _Local()


def _counting(rule: Rule, who: str, *, dry: bool) -> Counting:
    """The count sent to Redis (its reply read by Counting.verdict), or
    decided in the process: while Redis cannot be reached, or without it."""
    count = count_of(rule, who)
    if redis_client.enabled():
        if redis_client.available():
            try:
                pending = redis_client.send(_redis(), ("EVALSHA", _SHA, *_arguments(count, dry)))
                return Counting(count, dry, pending=pending)
            except (redis_errors.ConnectionError, redis_errors.TimeoutError) as error:
                redis_client.note_outage(error)
        return Counting(count, dry, _decide_in(_local, count, dry))
    return Counting(count, dry, _decide_in(cache, count, dry))


def _decide_in(store, count: Count, dry: bool) -> Verdict:
    with _lock:
        tat = store.get(count.key)
        verdict, new_tat = step(tat, count.now_ms, count.interval_ms, count.limit)
        if verdict.allowed and not dry:
            store.set(count.key, new_tat, timeout=math.ceil((new_tat - count.now_ms) / 1000))
    return verdict


def _arguments(count: Count, dry: bool) -> tuple:
    return (1, count.key, count.now_ms, count.interval_ms, count.limit, "1" if dry else "0")


def _verdict_of_reply(reply, count: Count, dry: bool) -> Verdict:
    if isinstance(reply, redis_errors.NoScriptError):  # Redis restarted: send the script itself
        (reply,) = redis_client.exchange(_redis(), ("EVAL", _SCRIPT, *_arguments(count, dry)))
    if isinstance(reply, Exception):
        raise reply
    return Verdict.of_reply(reply)


def _verdict_of_redis(pending, count: Count, dry: bool) -> Verdict:
    """The verdict from Redis's reply; decided in the process when Redis
    could not be reached."""
    try:
        (reply,) = pending.replies()
        return _verdict_of_reply(reply, count, dry)
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as error:
        redis_client.note_outage(error)
        return _decide_in(_local, count, dry)
