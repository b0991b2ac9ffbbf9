"""A new visitor's first page view in one SQL statement (PostgreSQL).

The snippet's first request carries no visitor id. It needs a visitor, a
session and, under a dynamic rule, a lease. Through the ORM that took about
twenty round trips inside a transaction, and under load every round trip
waits for a CPU: throughput collapsed. Here one statement, committed on its
own, inserts the visitor and the session and, in the same statement, takes
the pool's free address released longest ago under a row lock (FOR UPDATE
SKIP LOCKED, so concurrent first visits take different rows; a row another
allocation has just marked held fails the re-check), marks it held and
inserts the lease. Nothing is written behind: every row is durable before
the answer. The partial unique index on live leases stays the final arbiter:
a conflict rolls the whole statement back and the ORM path answers instead.

The statement leases nothing, and substitution.services.lease_acquire
decides, whenever the ORM path's other rules could apply: a lease whose hold
ran out before the free address was released is waiting to be released
(activity is flushed first; LRU then prefers its address), or no address is
free (the pool's exhaustion policy). Leases that ran out after it wait for
the periodic release, which changes nothing about this choice. The per-IP
cap is checked in the statement itself.
"""

import json
import uuid
from datetime import datetime
from functools import cache

from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.backends.postgresql.base import ServerBindingCursor

from substitution.models import Lease, Pool, Rule
from substitution.rules import SiteSnapshot, Substitution, first_rule, leased, static_or_nothing
from substitution.services import Allocation, lease_acquire

from .channels import Source
from .devices import Device
from .models import Session, Visitor
from .sessions import new_session, visit_of

_ALLOCATE = """
, pool AS (
    SELECT id, hold_minutes, max_live_leases_per_ip FROM substitution_pool WHERE id = %s
), capped AS (
    SELECT CASE WHEN pool.max_live_leases_per_ip > 0 AND %s::text <> '' THEN (
        SELECT count(*) FROM substitution_lease
        WHERE pool_id = pool.id AND released_at IS NULL AND expires_at > %s AND ip_hash = %s
    ) >= pool.max_live_leases_per_ip ELSE false END AS ip_cap
    FROM pool
), candidate AS MATERIALIZED (
    SELECT id, email, last_released_at FROM substitution_address
    WHERE pool_id = %s AND active AND NOT held AND NOT (SELECT ip_cap FROM capped)
    ORDER BY last_released_at ASC NULLS FIRST, id
    LIMIT 1 FOR UPDATE SKIP LOCKED
), address AS MATERIALIZED (
    -- A lease that ran out before the candidate was released frees an address
    -- that comes first in LRU order: then nothing is taken here, and the ORM
    -- path releases expired leases (written-behind activity flushed first).
    SELECT candidate.* FROM candidate WHERE NOT coalesce((
        SELECT expires_at <= %s AND expires_at < candidate.last_released_at FROM substitution_lease
        WHERE pool_id = %s AND released_at IS NULL ORDER BY expires_at LIMIT 1
    ), false)
), held AS (
    UPDATE substitution_address SET held = true FROM address WHERE substitution_address.id = address.id
), lease AS (
    INSERT INTO substitution_lease
        (pool_id, address_id, visitor_id, started_at, last_activity_at, expires_at, end_reason, ip_hash)
    SELECT pool.id, address.id, new_visitor.id, start.at, start.at,
        start.at + make_interval(mins => pool.hold_minutes), '', %s::text
    FROM pool, address, new_visitor,
        -- A lease never starts before the address's previous lease ended
        -- (clocks of two web processes may differ by a little).
        LATERAL (SELECT greatest(%s::timestamptz, address.last_released_at) AS at) start
    RETURNING id, expires_at
)
SELECT (SELECT id FROM new_visitor), (SELECT id FROM new_session),
    (SELECT email FROM address), (SELECT id FROM lease), (SELECT expires_at FROM lease),
    (SELECT hold_minutes FROM pool), (SELECT ip_cap FROM capped)
"""
_NO_ALLOCATION = """
SELECT (SELECT id FROM new_visitor), (SELECT id FROM new_session), NULL, NULL, NULL, NULL, NULL
"""


def supported() -> bool:
    return connection.vendor == "postgresql"


@cache
def _fields(model) -> tuple:
    return tuple(field for field in model._meta.concrete_fields if not field.primary_key)


def _columns(model) -> str:
    return ", ".join(connection.ops.quote_name(field.column) for field in _fields(model))


def _row(instance) -> str:
    """The instance's fields as one JSON object: one parameter for a whole
    row, read back by jsonb_populate_record (dozens of parameters cost more
    to send one by one)."""
    row = {}
    for field in _fields(type(instance)):
        value = field.get_prep_value(getattr(instance, field.attname))
        row[field.column] = value.isoformat() if isinstance(value, datetime) else value
    return json.dumps(row)


@cache
def _sql(allocate: bool) -> str:
    """The statement's text, the same on every call so it is planned once per connection."""
    table = Session._meta.db_table
    quote = connection.ops.quote_name
    session_values = ", ".join(
        "(SELECT id FROM new_visitor)" if field.column == "visitor_id" else f"given.{quote(field.column)}"
        for field in _fields(Session)
    )
    visitor_values = ", ".join("%s" for _field in _fields(Visitor))
    sql = (
        f"WITH new_visitor AS (INSERT INTO {Visitor._meta.db_table} ({_columns(Visitor)}) "
        f"VALUES ({visitor_values}) RETURNING id), "
        f"new_session AS (INSERT INTO {table} ({_columns(Session)}) SELECT {session_values} "
        f"FROM jsonb_populate_record(NULL::{table}, %s::jsonb) given RETURNING id)"
    )
    return sql + (_ALLOCATE if allocate else _NO_ALLOCATION)


def _statement(visitor: Visitor, session: Session, pool_id: int | None, ip_hash: str, now: datetime):
    params = [field.get_prep_value(getattr(visitor, field.attname)) for field in _fields(Visitor)]
    params.append(_row(session))
    if pool_id is None:
        return _sql(False), params
    params += [pool_id, ip_hash, now, ip_hash, pool_id, now, pool_id, ip_hash, now]
    return _sql(True), params


NEVER_BY_COUNT = 2**31


class _PreparedCursor(ServerBindingCursor):
    """Parameters bound by the server, and the statement prepared once per
    connection: PostgreSQL plans it once, not on every first visit. (Behind a
    pooler in transaction mode, prepared statements need its support, e.g.
    PgBouncer 1.21's max_prepared_statements.)"""

    def execute(self, query, params=None, **kwargs):
        return super().execute(query, params, prepare=True)


def _execute(sql: str, params: list):
    # Inside a transaction (a test's, a caller's) a savepoint keeps a conflict
    # from breaking it; otherwise the statement commits on its own, with no
    # BEGIN and COMMIT round trips.
    if connection.in_atomic_block:
        with transaction.atomic():
            return _fetch(sql, params)
    return _fetch(sql, params)


def _fetch(sql: str, params: list):
    """Run the statement. A reused connection is not health-checked first (a
    SELECT 1 round trip on every first visit); when the server closed it
    meanwhile, the statement fails before it ran and is sent again on a new
    connection, as Django's health check would have reconnected."""
    reused = connection.connection is not None
    try:
        return _run(sql, params)
    except (OperationalError, InterfaceError):
        if not reused or connection.in_atomic_block or connection.is_usable():
            raise
        connection.close()
        return _run(sql, params)


def _run(sql: str, params: list):
    connection.ensure_connection()
    if connection.connection.prepare_threshold is None:
        # Django turns psycopg's prepared statements off (None), which also
        # ignores prepare=True. A threshold never reached keeps every other
        # query unprepared (Django's cursors bind on the client and are never
        # prepared anyway) and lets this statement be prepared.
        connection.connection.prepare_threshold = NEVER_BY_COUNT
    # Through Django's cursor wrapper: database errors become Django's, and
    # queries are logged where Django logs them (tests count them).
    with connection._prepare_cursor(_PreparedCursor(connection.connection)) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def first_page_view(
    *,
    snapshot: SiteSnapshot,
    request,
    source: Source,
    device: Device,
    user_agent: str,
    ip: str,
    ip_hash: str,
    now: datetime,
) -> tuple[Visitor, Session, Substitution] | None:
    """Record a new visitor's first page view and answer it: the visitor, the
    session and the substitution of the first matching rule, every row
    committed. None when the statement conflicted and wrote nothing: the
    caller takes the ORM path."""
    visitor = Visitor(site_id=snapshot.site_id, vid=uuid.uuid4().hex, created_at=now, last_seen_at=now)
    session = new_session(
        visitor,
        None,
        request,
        source,
        user_agent,
        now,
        last_non_direct_days=snapshot.last_non_direct_days,
        device=device,
        ip=ip,
    )
    rule = first_rule(snapshot, visit_of(session), with_visitor=True)
    pool_id = rule.pool_id if rule is not None and rule.kind == Rule.Kind.DYNAMIC else None
    sql, params = _statement(visitor, session, pool_id, ip_hash, now)
    try:
        visitor_id, session_id, email, lease_id, expires_at, hold_minutes, ip_cap = _execute(sql, params)
    except IntegrityError:
        return None
    visitor.pk, session.pk = visitor_id, session_id
    session.visitor = visitor
    if pool_id is None:
        return visitor, session, static_or_nothing(rule)
    if lease_id is not None:
        lease = Lease(pk=lease_id, expires_at=expires_at)
        return visitor, session, leased(rule, Allocation(email, expires_at, lease), hold_minutes)
    if ip_cap:
        return visitor, session, leased(rule, Allocation(email="", expires_at=None, refused="ip_cap"), hold_minutes)
    # Expired leases to release first, or no free address: the ORM path decides.
    pool = Pool.objects.get(pk=pool_id)
    allocation = lease_acquire(pool=pool, visitor=visitor, now=now, ip_hash=ip_hash)
    return visitor, session, leased(rule, allocation, pool.hold_minutes)
