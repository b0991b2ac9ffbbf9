"""Pools, leases and rules: which address a visitor is shown.

PostgreSQL decides every allocation: the free address is chosen under a row
lock (SKIP LOCKED, so concurrent requests take different rows), and partial
unique indexes refuse a second unreleased lease on one address or for one
visitor in one pool. SQLite serialises writers instead (IMMEDIATE transactions).
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F

from tracker.models import Visitor

from . import activity
from .models import Address, Lease, Pool, PoolExhaustion
from .pools import pool_address_for_token, pool_fill  # noqa: F401 - the services API

log = logging.getLogger(__name__)

ALLOCATION_ATTEMPTS = 5


def release_expired_leases(pool: Pool, now: datetime) -> int:
    """End every lease of the pool whose hold has run out; the address becomes
    free as of the lease's expiry (which is what LRU and attribution read).
    Activity written behind is applied first, so no active lease is released
    on a stale expiry."""
    expired = Lease.objects.filter(pool=pool, released_at__isnull=True, expires_at__lte=now)
    if not expired.exists():
        return 0
    activity.flush()
    with transaction.atomic():
        rows = list(expired.select_for_update(skip_locked=True).values_list("id", "address_id", "expires_at"))
        for lease_id, address_id, expires_at in rows:
            Lease.objects.filter(id=lease_id).update(released_at=expires_at, end_reason=Lease.EndReason.EXPIRED)
            Address.objects.filter(id=address_id).update(last_released_at=expires_at, held=False)
        return len(rows)


def release_all_expired(now: datetime) -> int:
    """The periodic task's work: flush activity (crash leftovers too) and end
    every expired lease in every pool."""
    activity.flush(orphans=True)
    pools = Pool.objects.filter(leases__released_at__isnull=True, leases__expires_at__lte=now).distinct()
    return sum(release_expired_leases(pool, now) for pool in pools)


@dataclass
class Allocation:
    email: str
    expires_at: datetime | None
    lease: Lease | None = None
    refused: str = ""  # why no address: "exhausted", "ip_cap", "conflict"


def lease_acquire(*, pool: Pool, visitor: Visitor, now: datetime, ip_hash: str = "") -> Allocation:
    """The visitor's address in this pool: their live lease (extended), else
    their previous address if free, else the free address released longest
    ago. A client IP already holding the pool's cap of live leases gets no new
    one (a script forging visitor ids cannot drain the pool). When none is
    free the pool's exhaustion policy applies and the event is recorded."""
    for _attempt in range(ALLOCATION_ATTEMPTS):
        try:
            with transaction.atomic():
                return _lease_acquire_once(pool, visitor, now, ip_hash)
        except IntegrityError:
            # Another request took the address (or leased this visitor) first.
            continue
    log.warning("Allocation gave up after %s conflicts in pool %s", ALLOCATION_ATTEMPTS, pool.pk)
    return Allocation(email="", expires_at=None, refused="conflict")


def _extend(lease: Lease, pool: Pool, now: datetime) -> Lease:
    lease.last_activity_at = now
    lease.expires_at = now + timedelta(minutes=pool.hold_minutes)
    Lease.objects.filter(pk=lease.pk).update(last_activity_at=lease.last_activity_at, expires_at=lease.expires_at)
    return lease


def _lease_acquire_once(pool: Pool, visitor: Visitor, now: datetime, ip_hash: str) -> Allocation:
    current = (
        Lease.objects.select_for_update()
        .select_related("address")
        .filter(pool=pool, visitor=visitor, released_at__isnull=True)
        .first()
    )
    if current is not None:
        if current.expires_at > now:
            _extend(current, pool, now)
            return Allocation(current.address.email, current.expires_at, current)
        Lease.objects.filter(pk=current.pk).update(released_at=current.expires_at, end_reason=Lease.EndReason.EXPIRED)
        Address.objects.filter(pk=current.address_id).update(last_released_at=current.expires_at, held=False)

    if ip_hash and pool.max_live_leases_per_ip:
        held = Lease.objects.filter(pool=pool, released_at__isnull=True, expires_at__gt=now, ip_hash=ip_hash)
        if held.count() >= pool.max_live_leases_per_ip:
            return Allocation(email="", expires_at=None, refused="ip_cap")
    release_expired_leases(pool, now)
    address = _free_address(pool, visitor)
    if address is None:
        return _exhausted(pool, visitor, now, ip_hash)
    # Clocks of two web processes may differ by a little: a lease never starts
    # before the address's previous lease ended.
    if address.last_released_at and address.last_released_at > now:
        now = address.last_released_at
    lease = _new_lease(pool, address, visitor, now, ip_hash)
    return Allocation(address.email, lease.expires_at, lease)


def _new_lease(pool: Pool, address: Address, visitor: Visitor, now: datetime, ip_hash: str) -> Lease:
    Address.objects.filter(pk=address.pk).update(held=True)
    return Lease.objects.create(
        pool=pool,
        address=address,
        visitor=visitor,
        started_at=now,
        last_activity_at=now,
        expires_at=now + timedelta(minutes=pool.hold_minutes),
        ip_hash=ip_hash,
    )


def _free_address(pool: Pool, visitor: Visitor) -> Address | None:
    """The visitor's previous address if it is free, else the free address
    released longest ago (never used ones first). Locked rows are skipped, and
    a row another transaction has just marked held fails the re-check, so
    concurrent allocations spread over different addresses."""
    free = Address.objects.filter(pool=pool, active=True, held=False)
    previous = Lease.objects.filter(pool=pool, visitor=visitor).order_by("-started_at").values("address_id")[:1]
    returning = free.filter(id__in=previous).select_for_update(skip_locked=True).first()
    if returning is not None:
        return returning
    return free.order_by(F("last_released_at").asc(nulls_first=True), "id").select_for_update(skip_locked=True).first()


def _exhausted(pool: Pool, visitor: Visitor, now: datetime, ip_hash: str) -> Allocation:
    PoolExhaustion.objects.create(pool=pool, at=now, policy=pool.exhausted_policy)
    if pool.exhausted_policy != Pool.ExhaustedPolicy.TAKE_OVER:
        return Allocation(email="", expires_at=None, refused="exhausted")
    victim = (
        Lease.objects.select_for_update(skip_locked=True)
        .select_related("address")
        .filter(pool=pool, released_at__isnull=True)
        .order_by("last_activity_at", "id")
        .first()
    )
    if victim is None:
        return Allocation(email="", expires_at=None, refused="exhausted")
    now = max(now, victim.started_at, victim.last_activity_at)
    Lease.objects.filter(pk=victim.pk).update(released_at=now, end_reason=Lease.EndReason.TAKEN_OVER)
    Address.objects.filter(pk=victim.address_id).update(last_released_at=now, held=False)
    # The victim's next page view must not be answered from the fast path.
    transaction.on_commit(lambda: activity.forget_visitor(victim.visitor_id))
    lease = _new_lease(pool, victim.address, visitor, now, ip_hash)
    return Allocation(victim.address.email, lease.expires_at, lease)


def substitute(*, site, visitor: Visitor | None, now: datetime, visit=None, ip_hash: str = ""):
    """Rules for a site object, read fresh (admin, tests, the write-through path)."""
    from .conditions import Visit
    from .rules import site_snapshot
    from .rules import substitute as substitute_snapshot

    snapshot = site_snapshot(site.site_key, fresh=True)
    if snapshot is None:
        from .rules import Substitution

        return Substitution(subs=[], expires_at=None)
    return substitute_snapshot(snapshot=snapshot, visitor=visitor, visit=visit or Visit(), now=now, ip_hash=ip_hash)


def blocks_for_site(site):
    from .rules import blocks_for_site as blocks

    return blocks(site)


def purge_old_leases(now: datetime) -> int:
    """Released leases older than RETENTION_DAYS that no lead refers to are
    deleted, so the table that grows with every visitor stays bounded."""
    from django.conf import settings

    from attribution.models import Lead

    cutoff = now - timedelta(days=getattr(settings, "RETENTION_DAYS", 90))
    referenced = Lead.objects.filter(lease__isnull=False).values("lease_id")
    old = Lease.objects.filter(released_at__lt=cutoff).exclude(id__in=referenced)
    deleted, _ = old.delete()
    return deleted
