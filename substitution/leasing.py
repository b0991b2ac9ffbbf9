"""A known visitor's lease in two statements (PostgreSQL).

`services.lease_acquire` decides; on PostgreSQL its two busiest steps run
here as one statement each instead of the ORM's several round trips:

- `settle_current`: the visitor's unreleased lease in the pool, locked (with
  its address, as the ORM's select_for_update through select_related locked
  both) and, when its hold has not run out, extended, else released at its
  expiry with its address freed; the per-IP cap's count; and the pool's
  other leases whose hold ran out, for the release that follows to look for
  no more: the returning visitor within the hold costs one statement, after
  it one more (and one when some leases ran out);
- `allocate`: the visitor's previous address if it is free, else the free
  address released longest ago (never used ones first), each under a row
  lock (FOR UPDATE SKIP LOCKED, so concurrent allocations take different
  rows; a row another allocation has just marked held fails the re-check),
  marked held, and the new lease inserted. Nothing when no address is free:
  the pool's exhaustion policy is the ORM's (services._exhausted). The partial
  unique indexes on live leases stay the final arbiter: a conflict rolls the
  statement back and lease_acquire tries again.

The rest of lease_acquire (the release of the pool's expired leases first)
runs between the two, in the same transaction, as on every database. That
release, once it has found some expired, ends them in one statement too
(`release_expired`: locked, ended, their addresses freed; the ORM took three).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection

from .models import Lease

# Its columns in the order Lease.from_db is given them (a foreign key's attribute is its column).
_FIELDS = tuple(field.attname for field in Lease._meta.concrete_fields)
_COLUMNS = ", ".join(f"lease.{field.column}" for field in Lease._meta.concrete_fields)

# The locked row's own values are returned (under READ COMMITTED, the newest
# version, which a concurrent flush may have moved), not the statement's
# snapshot. The per-IP count leaves out the visitor's own lease, expired when
# it is used. The final SELECT gives one row even with no current lease.
_CURRENT = f"""
WITH current AS MATERIALIZED (
    SELECT {_COLUMNS}, address.email FROM substitution_lease lease
    JOIN substitution_address address ON address.id = lease.address_id
    WHERE lease.pool_id = %(pool)s AND lease.visitor_id = %(visitor)s AND lease.released_at IS NULL
    ORDER BY lease.id LIMIT 1 FOR UPDATE
), extended AS (
    UPDATE substitution_lease SET last_activity_at = %(at)s, expires_at = %(until)s
    FROM current WHERE substitution_lease.id = current.id AND current.expires_at > %(at)s
    RETURNING substitution_lease.id
), ended AS (
    UPDATE substitution_lease SET released_at = current.expires_at, end_reason = %(expired)s
    FROM current WHERE substitution_lease.id = current.id AND current.expires_at <= %(at)s
    RETURNING substitution_lease.address_id, substitution_lease.released_at
), freed AS (
    UPDATE substitution_address SET last_released_at = ended.released_at, held = false
    FROM ended WHERE substitution_address.id = ended.address_id
)
SELECT current.*, EXISTS (SELECT 1 FROM extended),
    %(cap)s > 0 AND %(ip)s::text <> '' AND (
        SELECT count(*) FROM substitution_lease
        WHERE pool_id = %(pool)s AND released_at IS NULL AND expires_at > %(at)s AND ip_hash = %(ip)s::text
    ) >= %(cap)s,
    ARRAY (
        SELECT id FROM substitution_lease
        WHERE pool_id = %(pool)s AND released_at IS NULL AND expires_at <= %(at)s ORDER BY id
    )
FROM (SELECT) one LEFT JOIN current ON true
"""

_ALLOCATE = f"""
WITH previous AS (
    SELECT address_id FROM substitution_lease WHERE pool_id = %(pool)s AND visitor_id = %(visitor)s
    ORDER BY started_at DESC LIMIT 1
), own AS MATERIALIZED (
    SELECT id, email, last_released_at FROM substitution_address
    WHERE id IN (SELECT address_id FROM previous) AND pool_id = %(pool)s AND active AND NOT held
    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
), lru AS MATERIALIZED (
    SELECT id, email, last_released_at FROM substitution_address
    WHERE pool_id = %(pool)s AND active AND NOT held AND NOT EXISTS (SELECT 1 FROM own)
    ORDER BY last_released_at ASC NULLS FIRST, id LIMIT 1 FOR UPDATE SKIP LOCKED
), chosen AS MATERIALIZED (
    SELECT * FROM own UNION ALL SELECT * FROM lru
), held AS (
    UPDATE substitution_address SET held = true FROM chosen WHERE substitution_address.id = chosen.id
), lease AS (
    INSERT INTO substitution_lease
        (pool_id, address_id, visitor_id, block_id, started_at, last_activity_at, expires_at, end_reason, ip_hash)
    SELECT %(pool)s, chosen.id, %(visitor)s, %(block)s::bigint, start.at, start.at,
        start.at + make_interval(mins => %(hold)s), '', %(ip)s::text
    FROM chosen,
        -- A lease never starts before the address's previous lease ended
        -- (clocks of two web processes may differ by a little).
        LATERAL (SELECT greatest(%(at)s::timestamptz, chosen.last_released_at) AS at) start
    RETURNING *
)
SELECT {_COLUMNS}, chosen.email FROM lease JOIN chosen ON chosen.id = lease.address_id
"""


# The pool's expired leases found (their ids: looked up by primary key, as
# the planner may otherwise walk the primary key's index in id order over
# every lease the pool ever had, 8 ms a release after two virtual days) locked
# in id order (not for a key change, as the flush locks them; those another
# transaction holds are left for the next release), ended at their expiry,
# and their addresses freed as of then. No other lease can have run out by
# the same `now` meanwhile (a new lease's hold starts at it). The
# lock re-checks a row's newest version, so a lease a flush has just extended
# is not ended; an address follows its one live lease, so the two updates
# lock no row that a concurrent release or allocation could wait for.
_RELEASE = """
WITH expired AS MATERIALIZED (
    SELECT id FROM substitution_lease
    WHERE id = ANY(%(ids)s) AND pool_id = %(pool)s AND released_at IS NULL AND expires_at <= %(at)s
    ORDER BY id FOR NO KEY UPDATE SKIP LOCKED
), ended AS (
    UPDATE substitution_lease SET released_at = substitution_lease.expires_at, end_reason = %(expired)s
    FROM expired WHERE substitution_lease.id = expired.id
    RETURNING substitution_lease.address_id, substitution_lease.released_at
), freed AS (
    UPDATE substitution_address SET last_released_at = ended.released_at, held = false
    FROM ended WHERE substitution_address.id = ended.address_id
)
SELECT count(*) FROM ended
"""


def supported() -> bool:
    return connection.vendor == "postgresql"


@dataclass
class Current:
    """The visitor's unreleased lease in the pool before this request (None:
    none), its address, whether it was live and is now extended, and whether
    the client's IP holds the pool's cap of live leases."""

    lease: Lease | None
    email: str
    live: bool
    ip_capped: bool
    # The pool's other leases whose hold had run out, unreleased (what the
    # release that follows looks for first).
    expired: list[int]


def settle_current(pool, visitor_id: int, now: datetime, ip_hash: str) -> Current:
    """The visitor's unreleased lease in the pool, locked: extended to `now`
    plus the hold when live, else released at its expiry (its address freed
    as of then); and the per-IP cap checked for a new lease."""
    until = now + timedelta(minutes=pool.hold_minutes)
    params = {
        "pool": pool.pk,
        "visitor": visitor_id,
        "at": now,
        "until": until,
        "expired": Lease.EndReason.EXPIRED.value,
        "cap": pool.max_live_leases_per_ip,
        "ip": ip_hash,
    }
    row = _fetch(_CURRENT, params)
    count = len(_FIELDS)
    email, live, ip_capped, expired = row[count:]
    if row[0] is None:
        return Current(None, "", False, bool(ip_capped), expired)
    lease = _lease(row)
    if live:
        lease.last_activity_at, lease.expires_at = now, until
    else:
        lease.released_at, lease.end_reason = lease.expires_at, Lease.EndReason.EXPIRED
        # Its own lease, ended by this statement, was still unreleased in its snapshot.
        expired = [lease_id for lease_id in expired if lease_id != lease.pk]
    return Current(lease, email, live, bool(ip_capped), expired)


def allocate(pool, visitor_id: int, now: datetime, ip_hash: str, block_id) -> tuple[Lease | None, str]:
    """A new lease on the visitor's previous address if free, else on the free
    address released longest ago; (None, "") when none is free."""
    params = {
        "pool": pool.pk,
        "visitor": visitor_id,
        "at": now,
        "hold": pool.hold_minutes,
        "block": block_id,
        "ip": ip_hash,
    }
    row = _fetch(_ALLOCATE, params)
    if row is None:
        return None, ""
    return _lease(row), row[len(_FIELDS)]


def release_expired(pool, now: datetime, lease_ids: list[int]) -> int:
    """End those of the pool's leases found expired (`lease_ids`) whose hold
    ran out by `now`, unreleased and not locked by another transaction, their
    addresses free as of their expiry; how many."""
    params = {"pool": pool.pk, "at": now, "expired": Lease.EndReason.EXPIRED.value, "ids": list(lease_ids)}
    return _fetch(_RELEASE, params)[0]


def _fetch(sql: str, params: dict):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _lease(row) -> Lease:
    return Lease.from_db(connection.alias, _FIELDS, row[: len(_FIELDS)])
