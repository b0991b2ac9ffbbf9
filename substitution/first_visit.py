"""A new visitor's first page view in one SQL statement (PostgreSQL).

The snippet's first request carries no visitor id. It needs a visitor, a
session and, under dynamic rules, a lease from each of their pools. Through
the ORM that took about twenty round trips inside a transaction, and under
load every round trip waits for a CPU: throughput collapsed. Here one
statement, committed on its own, runs the tracker's inserts of the visitor
and the session (its `NewRows`: common table expressions `new_visitor` and
`new_session`, each returning `id`) and, in the same statement, for each pool
takes the free address released longest ago under a row lock (FOR UPDATE
SKIP LOCKED, so concurrent first visits take different rows; a row another
allocation has just marked held fails the re-check), marks it held and
inserts the lease. Nothing is written behind. The partial unique index on
live leases stays the final arbiter: a conflict rolls the whole statement
back and the ORM path answers instead.

The statement's commit does not wait for PostgreSQL to flush its log to disk
(synchronous_commit off for its own transaction, set by the statement itself:
no round trip more), unless COLLECT_WAIT_FOR_DISK is on or a caller's
transaction is open. The flush was about a sixth of PostgreSQL's CPU per first
visit. What it risks: were the database server itself to crash (not a web
process), the first visits of the last moments before it (PostgreSQL flushes
within three times wal_writer_delay, 0.6 s by default) would be lost whole,
never half; the rows stay consistent. A returning visitor's activity written
behind through Redis already risks ACTIVITY_FLUSH_SECONDS of the same kind.

The statement leases nothing from a pool, and services.lease_acquire
decides, whenever the ORM path's other rules could apply: a lease whose hold
ran out before the free address was released is waiting to be released
(activity is flushed first; LRU then prefers its address), or no address is
free (the pool's exhaustion policy). Leases that ran out after it wait for
the periodic release, which changes nothing about this choice. The per-IP
cap is checked in the statement itself.
"""

import re
import threading
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    connections,
    transaction,
)
from psycopg import RawCursor

_COMMENT = re.compile(r"--[^\n]*")
_PUNCTUATION = re.compile(r" ?([(),=<>]) ?")  # the statement has no string literal with spaces
_NAMED = re.compile(r"%\((\w+)\)s")
# One pool's part of the statement; {i} numbers the pool.
# One pool's part of the statement; {i} numbers the pool. Parameters are
# named: "at" (now) and "ip" (the client's IP hash) are sent once for all pools.
_ALLOCATE = """
, pool{i} AS (
    SELECT id, hold_minutes, CASE WHEN max_live_leases_per_ip > 0 AND %(ip)s::text <> '' THEN (
        SELECT count(*) FROM substitution_lease
        WHERE pool_id = %(pool{i})s AND released_at IS NULL AND expires_at > %(at)s AND ip_hash = %(ip)s
    ) >= max_live_leases_per_ip ELSE false END AS ip_cap
    FROM substitution_pool WHERE id = %(pool{i})s
), candidate{i} AS MATERIALIZED (
    SELECT id, email, last_released_at FROM substitution_address
    WHERE pool_id = %(pool{i})s AND active AND NOT held AND NOT (SELECT ip_cap FROM pool{i})
    ORDER BY last_released_at ASC NULLS FIRST, id
    LIMIT 1 FOR UPDATE SKIP LOCKED
), address{i} AS MATERIALIZED (
    -- A lease that ran out before the candidate was released frees an address
    -- that comes first in LRU order: then nothing is taken here, and the ORM
    -- path releases expired leases (written-behind activity flushed first).
    SELECT candidate{i}.* FROM candidate{i} WHERE NOT coalesce((
        SELECT expires_at <= %(at)s AND expires_at < candidate{i}.last_released_at FROM substitution_lease
        WHERE pool_id = %(pool{i})s AND released_at IS NULL ORDER BY expires_at LIMIT 1
    ), false)
), held{i} AS (
    UPDATE substitution_address SET held = true FROM address{i} WHERE substitution_address.id = address{i}.id
), lease{i} AS (
    INSERT INTO substitution_lease
        (pool_id, address_id, visitor_id, block_id, started_at, last_activity_at, expires_at, end_reason, ip_hash)
    SELECT pool{i}.id, address{i}.id, new_visitor.id, %(block{i})s::bigint, start.at, start.at,
        start.at + make_interval(mins => pool{i}.hold_minutes), '', %(ip)s::text
    FROM pool{i}, address{i}, new_visitor,
        -- A lease never starts before the address's previous lease ended
        -- (clocks of two web processes may differ by a little).
        LATERAL (SELECT greatest(%(at)s::timestamptz, address{i}.last_released_at) AS at) start
    RETURNING id, expires_at
)"""
_ANSWER = (
    "(SELECT email FROM address{i}), (SELECT id FROM lease{i}), (SELECT expires_at FROM lease{i}), "
    "(SELECT hold_minutes FROM pool{i}), (SELECT ip_cap FROM pool{i})"
)


@dataclass(frozen=True)
class NewRows:
    """The tracker's part of the statement: `sql` starts with WITH and defines
    `new_visitor` and `new_session` (each RETURNING id); `params` fill its
    named parameters (names starting with "t_", which this module leaves alone)."""

    sql: str
    params: dict


@dataclass(frozen=True)
class PoolAnswer:
    email: str | None
    lease_id: int | None
    expires_at: datetime | None
    hold_minutes: int | None
    ip_cap: bool


def supported() -> bool:
    return connection.vendor == "postgresql"


@cache
def _sql(prelude: str, pools: int) -> tuple[str, tuple]:
    """The statement's text, the same for the same number of pools, so it is
    planned once per connection, with its parameters numbered ($1, $2...; a
    name used twice is one parameter), and the names in their numbers' order."""
    answers = ", ".join(_ANSWER.format(i=i) for i in range(pools))
    sql = (
        prelude
        + "".join(_ALLOCATE.format(i=i) for i in range(pools))
        + "\nSELECT (SELECT id FROM new_visitor), (SELECT id FROM new_session)"
        + (", " + answers if answers else "")
        # The statement's own transaction commits without waiting for the
        # disk, unless asked to (a caller's transaction keeps its setting).
        + ", set_config('synchronous_commit', CASE WHEN %(wait)s THEN current_setting('synchronous_commit')"
        + " ELSE 'off' END, true)"
    )
    # Numbered here once: psycopg would convert the names on every visit (it
    # keeps converted texts only up to 4 KiB, which this one passes). Without
    # comments and runs of spaces the text sent on every visit is shorter.
    names: dict[str, int] = {}
    numbered = _NAMED.sub(lambda m: f"${names.setdefault(m.group(1), len(names) + 1)}", sql)
    return _PUNCTUATION.sub(r"\1", " ".join(_COMMENT.sub("", numbered).split())), tuple(names)


def first_page_view(
    rows: NewRows, pools: tuple, ip_hash: str, now: datetime
) -> tuple[int, int, list[PoolAnswer]] | None:
    """Insert the tracker's rows and lease from each of `pools` ((pool id,
    block ids), ...) in one statement: (visitor id, session id, each pool's
    answer), every row committed; None when it conflicted and wrote nothing."""
    # Inside a caller's transaction its own setting holds (see the docstring).
    wait = settings.COLLECT_WAIT_FOR_DISK or connections[DEFAULT_DB_ALIAS].in_atomic_block
    params = {**rows.params, "at": now, "ip": ip_hash, "wait": wait}
    for i, (pool_id, block_ids) in enumerate(pools):
        params[f"pool{i}"] = pool_id
        params[f"block{i}"] = block_ids[0]
    sql, names = _sql(rows.sql, len(pools))
    try:
        row = _execute(sql, [params[name] for name in names])
    except IntegrityError:
        return None
    answers = [PoolAnswer(*row[2 + 5 * i : 7 + 5 * i]) for i in range(len(pools))]
    return row[0], row[1], answers


NEVER_BY_COUNT = 2**31


class _PreparedCursor(RawCursor):
    """Parameters bound by the server, numbered as PostgreSQL numbers them
    (nothing to convert on every visit), and the statement prepared once per
    connection: PostgreSQL plans it once, not on every first visit. (Behind a
    pooler in transaction mode, prepared statements need its support, e.g.
    PgBouncer 1.21's max_prepared_statements.)"""

    def execute(self, query, params=None, **kwargs):
        return super().execute(query, params, prepare=True)


def _execute(sql: str, params: list):
    # Inside a transaction (a test's, a caller's) a savepoint keeps a conflict
    # from breaking it; otherwise the statement commits on its own, with no
    # BEGIN and COMMIT round trips. The connection is looked up once: each
    # look-up through django.db.connection costs a few microseconds.
    db = connections[DEFAULT_DB_ALIAS]
    if db.in_atomic_block:
        with transaction.atomic(using=db.alias):
            return _fetch(db, sql, params)
    return _fetch(db, sql, params)


def _fetch(db, sql: str, params: list):
    """Run the statement. A reused connection is not health-checked first (a
    SELECT 1 round trip on every first visit); when the server closed it
    meanwhile, the statement fails before it ran and is sent again on a new
    connection, as Django's health check would have reconnected."""
    reused = db.connection is not None
    try:
        return _run(db, sql, params)
    except (OperationalError, InterfaceError):
        if not reused or db.in_atomic_block or db.is_usable():
            raise
        db.close()
        return _run(db, sql, params)


class _Kept(threading.local):
    """The cursor the statement runs on, kept per thread for its current
    database connection from one first visit to the next (a new cursor on
    every visit cost about ten microseconds)."""

    raw = None
    cursor = None


_kept = _Kept()


def _run(db, sql: str, params: list):
    db.ensure_connection()
    raw = db.connection
    cursor = _kept.cursor
    if _kept.raw is not raw or cursor.closed:
        if raw.prepare_threshold is None:
            # Django turns psycopg's prepared statements off (None), which also
            # ignores prepare=True. A threshold never reached keeps every other
            # query unprepared (Django's cursors bind on the client and are never
            # prepared anyway) and lets this statement be prepared.
            raw.prepare_threshold = NEVER_BY_COUNT
        cursor = _PreparedCursor(raw)
        _kept.raw, _kept.cursor = raw, cursor
    # Through Django's cursor wrapper: database errors become Django's, and
    # queries are logged where Django logs them (tests count them).
    wrapped = db._prepare_cursor(cursor)
    wrapped.execute(sql, params)
    return wrapped.fetchone()
