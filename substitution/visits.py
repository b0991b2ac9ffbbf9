"""The one entry point of substitution: what a visit is shown, block by block.

The collect endpoint (the tracker) calls `substitute` with a visit: the site,
the visitor (if any), the session's facts, the client address and what the
rules' conditions read; substitution evaluates the site's rules for each
block and, for the blocks a dynamic rule decides, holds one lease per pool
for the visitor. It is the only writer of pools, addresses and leases. A
visit reaches it in one of four shapes:

- no visitor (no consent): only static rules apply;
- a returning visitor with `returning` facts: answered from Redis when
  nothing can have changed (one round trip, activity written behind), else
  None and the tracker records the page view and asks again;
- a new visitor with `new_rows` (PostgreSQL): the tracker's inserts of the
  visitor and session run in the same statement as every lease of the visit
  (None when it conflicted: the tracker takes the ORM path);
- a known visitor: the leases decided in the caller's transaction, the
  answer cached for the fast path once it commits.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction

from . import activity, services

# What callers of the entry point use beside it: the fast path's facts, and
# the Redis link it answers over (one round trip, also for their own counters).
from .activity import (
    Returning,  # noqa: F401
    on_flush,  # noqa: F401
)
from .activity import enabled as redis_enabled  # noqa: F401
from .activity import exchange as redis_exchange  # noqa: F401
from .conditions import Visit  # noqa: F401 - what the rules read of a visit, given by the caller
from .first_visit import NewRows, first_page_view
from .models import Pool
from .rules import Decision, RulesSnapshot, decide, rules_snapshot


class RateLimited(Exception):
    """The returning visitor's request went over its client's rate limit."""


@dataclass(frozen=True)
class SessionFacts:
    """The tracker's session as the fast path checks it: its id, what tells
    its campaign from another's, and its analytics ids."""

    id: int | None
    key: str
    ga: str
    ym: str


@dataclass(frozen=True)
class VisitRequest:
    site_id: int
    now: datetime
    facts: Visit = field(default_factory=Visit)
    site_version: str = ""  # the tracker's fingerprint of the site's own settings
    visitor_id: int | None = None
    vid: str = ""
    session: SessionFacts | None = None
    ip_hash: str = ""
    returning: Returning | None = None
    new_rows: NewRows | None = None
    fresh: bool = False  # read the rules now, not from the process's snapshot


@dataclass
class Substitution:
    """The answer: an address for each block a rule decided (none: the
    original stays), the earliest lease expiry, and the leases behind it."""

    subs: list[dict]
    expires_at: datetime | None = None
    lease_ids: list[int] = field(default_factory=list)
    hold_minutes: int = 0
    refused: str = ""  # why a pool gave no address: "exhausted", "ip_cap", "conflict"
    visitor_id: int | None = None
    session_id: int | None = None


def substitute(visit: VisitRequest) -> Substitution | None:
    """What the visit is shown; None only for a `returning` visit the fast
    path cannot answer and a `new_rows` statement that conflicted."""
    snapshot = rules_snapshot(visit.site_id, fresh=visit.fresh)
    key = activity.visit_key(visit.site_id, visit.vid) if visit.vid else ""
    fingerprint = f"{visit.site_version}:{snapshot.fingerprint}"
    if visit.returning is not None:
        outcome, hit = activity.fast_page_view(
            key=key, fingerprint=fingerprint, now=visit.now.timestamp(), returning=visit.returning
        )
        if outcome == "limited":
            raise RateLimited
        if hit is None:
            return None
        subs, hold = hit
        return Substitution(subs=subs, expires_at=visit.now + timedelta(minutes=hold), hold_minutes=hold)
    with_visitor = visit.visitor_id is not None or visit.new_rows is not None
    decision = decide(snapshot, visit.facts, with_visitor=with_visitor, now=visit.now)
    if visit.new_rows is not None:
        result = _first_visit(visit, decision, snapshot)
        if result is not None and result.lease_ids:
            key = activity.visit_key(visit.site_id, visit.vid)
            session = SessionFacts(result.session_id, visit.session.key, visit.session.ga, visit.session.ym)
            transaction.on_commit(lambda: _remember(key, fingerprint, result, session, visit.now))
        return result
    if visit.visitor_id is None:
        return Substitution(subs=list(decision.static))
    result = Substitution(subs=list(decision.static), visitor_id=visit.visitor_id)
    for pool_id, block_ids in decision.pools:
        _lease(result, visit, snapshot.pool(pool_id), block_ids)
    result.subs.sort(key=lambda sub: sub["block"])
    if key and visit.session is not None and result.lease_ids:
        transaction.on_commit(lambda: _remember(key, fingerprint, result, visit.session, visit.now))
    elif key:
        transaction.on_commit(lambda: activity.forget(key))
    return result


def _first_visit(visit: VisitRequest, decision: Decision, snapshot: RulesSnapshot) -> Substitution | None:
    answered = first_page_view(visit.new_rows, decision.pools, visit.ip_hash, visit.now)
    if answered is None:
        return None
    visitor_id, session_id, answers = answered
    result = Substitution(subs=list(decision.static), visitor_id=visitor_id, session_id=session_id)
    for (pool_id, block_ids), answer in zip(decision.pools, answers, strict=True):
        if answer.lease_id is not None:
            _add(result, block_ids, answer.email, answer.expires_at, answer.lease_id, answer.hold_minutes)
        elif answer.ip_cap:
            result.refused = result.refused or "ip_cap"
        else:
            # Expired leases to release first, or no free address: the ORM path decides.
            _lease(result, visit, snapshot.pool(pool_id), block_ids)
    result.subs.sort(key=lambda sub: sub["block"])
    return result


def _lease(result: Substitution, visit: VisitRequest, pool: Pool, block_ids: tuple) -> None:
    """One pool's lease for a known visitor (the pool as the rules' snapshot
    read it: a change of its hold, policy or cap applies within
    rules.SNAPSHOT_SECONDS, as a change of the rules does)."""
    leased = services.lease_acquire(
        pool=pool, visitor=result.visitor_id, now=visit.now, ip_hash=visit.ip_hash, block_id=block_ids[0]
    )
    if leased.lease is None:
        result.refused = result.refused or leased.refused
        return
    _add(result, block_ids, leased.email, leased.expires_at, leased.lease.pk, pool.hold_minutes)


def _add(result: Substitution, block_ids, email: str, expires_at, lease_id: int, hold_minutes: int) -> None:
    """One pool's lease into the visit's answer: its address in each of its blocks."""
    result.subs += [{"block": block_id, "email": email} for block_id in block_ids]
    result.lease_ids.append(lease_id)
    result.expires_at = expires_at if result.expires_at is None else min(result.expires_at, expires_at)
    result.hold_minutes = hold_minutes if not result.hold_minutes else min(result.hold_minutes, hold_minutes)


def _remember(key: str, fingerprint: str, result: Substitution, session: SessionFacts, now: datetime) -> None:
    """After commit: the visitor's next page views are answered from Redis."""
    activity.remember(
        key=key,
        fingerprint=fingerprint,
        lease_ids=result.lease_ids,
        visitor_id=result.visitor_id,
        session=session,
        subs=sorted(result.subs, key=lambda sub: sub["block"]),
        hold_minutes=result.hold_minutes,
        db_expires_at=result.expires_at,
        now=now,
    )
