"""Leases: which address of a pool a visitor holds.

PostgreSQL decides every allocation: the free address is chosen under a row
lock (SKIP LOCKED, so concurrent requests take different rows), and partial
unique indexes refuse a second unreleased lease on one address or for one
visitor in one pool. SQLite serialises writers instead (IMMEDIATE transactions).
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef

from lib import sql

from . import activity, leasing
from .models import Address, Lease, Pool, PoolExhaustion
from .pools import pool_address_for_token, pool_fill  # noqa: F401 - the services API

log = logging.getLogger(__name__)

ALLOCATION_ATTEMPTS = 5


def release_expired_leases(pool: Pool, now: datetime, candidates: list[int] | None = None) -> int:
    """End every lease of the pool whose hold has run out; the address becomes
    free as of the lease's expiry (which is what LRU and attribution read).
    Activity written behind is applied first, so no active lease is released
    on a stale expiry. `candidates`: the pool's unreleased leases whose hold
    had run out by `now`, when the caller has just read them."""
    expired = Lease.objects.filter(pool=pool, released_at__isnull=True, expires_at__lte=now)
    if candidates is None:
        candidates = list(expired.values_list("id", flat=True))
    if not candidates:
        return 0
    if activity.pending_for_leases(candidates):
        activity.flush()
    if leasing.supported():  # one statement (leasing's docstring)
        return leasing.release_expired(pool, now, candidates)
    # Inside an allocation's transaction no savepoint of its own (two round
    # trips): nothing here is expected to fail, and if it did the allocation
    # would be rolled back with it.
    with transaction.atomic(savepoint=False):
        # The expired leases locked in id order, and not for a key change (as
        # the flush locks them); those another transaction holds are left for
        # the next release. Then two statements whatever their number.
        rows = list(
            expired.order_by("pk")
            .select_for_update(skip_locked=True, no_key=True)
            .values_list("id", "address_id", "expires_at")
        )
        if not rows:
            return 0
        Lease.objects.filter(id__in=[lease_id for lease_id, _address, _at in rows]).update(
            released_at=F("expires_at"), end_reason=Lease.EndReason.EXPIRED
        )
        freed = sorted((address_id, at, False) for _lease, address_id, at in rows)
        sql.update_rows(Address, ["last_released_at", "held"], freed)
        return len(rows)


def release_all_expired(now: datetime) -> int:
    """The periodic task's work: flush activity (crash leftovers too) and end
    every expired lease in every pool."""
    activity.flush(orphans=True)
    pools = Pool.objects.filter(leases__released_at__isnull=True, leases__expires_at__lte=now).distinct()
    return sum(release_expired_leases(pool, now) for pool in pools)


@dataclass
class Leased:
    """The answer to a lease request: the address and its lease, or why none."""

    email: str
    expires_at: datetime | None
    lease: Lease | None = None
    refused: str = ""  # why no address: "exhausted", "ip_cap", "conflict"


def lease_acquire(*, pool: Pool, visitor, now: datetime, ip_hash: str = "", block_id: int | None = None) -> Leased:
    """The visitor's address in this pool: their live lease (extended), else
    their previous address if free, else the free address released longest
    ago. A client IP already holding the pool's cap of live leases gets no new
    one (a script forging visitor ids cannot drain the pool). When none is
    free the pool's exhaustion policy applies and the event is recorded.
    `visitor` is the tracker's visitor or its id; `block_id` the block the
    address is shown in."""
    visitor_id = getattr(visitor, "pk", visitor)
    for _attempt in range(ALLOCATION_ATTEMPTS):
        try:
            with transaction.atomic():
                return _lease_acquire_once(pool, visitor_id, now, ip_hash, block_id)
        except IntegrityError:
            # Another request took the address (or leased this visitor) first.
            continue
    log.warning("A lease request gave up after %s conflicts in pool %s", ALLOCATION_ATTEMPTS, pool.pk)
    return Leased(email="", expires_at=None, refused="conflict")


def _extend(lease: Lease, pool: Pool, now: datetime) -> Lease:
    lease.last_activity_at = now
    lease.expires_at = now + timedelta(minutes=pool.hold_minutes)
    Lease.objects.filter(pk=lease.pk).update(last_activity_at=lease.last_activity_at, expires_at=lease.expires_at)
    return lease


def _lease_acquire_once(pool: Pool, visitor_id: int, now: datetime, ip_hash: str, block_id) -> Leased:
    if leasing.supported():  # the same steps in two statements (leasing's docstring)
        current = leasing.settle_current(pool, visitor_id, now, ip_hash)
        if current.live:
            return Leased(current.email, current.lease.expires_at, current.lease)
        if current.ip_capped:
            return Leased(email="", expires_at=None, refused="ip_cap")
        release_expired_leases(pool, now, current.expired)
        lease, email = leasing.allocate(pool, visitor_id, now, ip_hash, block_id)
        if lease is None:
            return _exhausted(pool, visitor_id, now, ip_hash, block_id)
        return Leased(email, lease.expires_at, lease)
    current = (
        Lease.objects.select_for_update()
        .select_related("address")
        .filter(pool=pool, visitor_id=visitor_id, released_at__isnull=True)
        .first()
    )
    if current is not None:
        if current.expires_at > now:
            _extend(current, pool, now)
            return Leased(current.address.email, current.expires_at, current)
        Lease.objects.filter(pk=current.pk).update(released_at=current.expires_at, end_reason=Lease.EndReason.EXPIRED)
        Address.objects.filter(pk=current.address_id).update(last_released_at=current.expires_at, held=False)

    if ip_hash and pool.max_live_leases_per_ip:
        held = Lease.objects.filter(pool=pool, released_at__isnull=True, expires_at__gt=now, ip_hash=ip_hash)
        if held.count() >= pool.max_live_leases_per_ip:
            return Leased(email="", expires_at=None, refused="ip_cap")
    release_expired_leases(pool, now)
    address = _free_address(pool, visitor_id)
    if address is None:
        return _exhausted(pool, visitor_id, now, ip_hash, block_id)
    # Clocks of two web processes may differ by a little: a lease never starts
    # before the address's previous lease ended.
    if address.last_released_at and address.last_released_at > now:
        now = address.last_released_at
    lease = _new_lease(pool, address, visitor_id, now, ip_hash, block_id)
    return Leased(address.email, lease.expires_at, lease)


def _new_lease(pool: Pool, address: Address, visitor_id: int, now: datetime, ip_hash: str, block_id) -> Lease:
    Address.objects.filter(pk=address.pk).update(held=True)
    return Lease.objects.create(
        pool=pool,
        address=address,
        visitor_id=visitor_id,
        block_id=block_id,
        started_at=now,
        last_activity_at=now,
        expires_at=now + timedelta(minutes=pool.hold_minutes),
        ip_hash=ip_hash,
    )


def _free_address(pool: Pool, visitor_id: int) -> Address | None:
    """The visitor's previous address if it is free, else the free address
    released longest ago (never used ones first). Locked rows are skipped, and
    a row another transaction has just marked held fails the re-check, so
    concurrent allocations spread over different addresses."""
    free = Address.objects.filter(pool=pool, active=True, held=False)
    previous = Lease.objects.filter(pool=pool, visitor_id=visitor_id).order_by("-started_at").values("address_id")[:1]
    returning = free.filter(id__in=previous).select_for_update(skip_locked=True).first()
    if returning is not None:
        return returning
    return free.order_by(F("last_released_at").asc(nulls_first=True), "id").select_for_update(skip_locked=True).first()


def _exhausted(pool: Pool, visitor_id: int, now: datetime, ip_hash: str, block_id) -> Leased:
    PoolExhaustion.objects.create(pool=pool, at=now, policy=pool.exhausted_policy)
    if pool.exhausted_policy != Pool.ExhaustedPolicy.TAKE_OVER:
        return Leased(email="", expires_at=None, refused="exhausted")
    victim = (
        Lease.objects.select_for_update(skip_locked=True)
        .select_related("address")
        .filter(pool=pool, released_at__isnull=True)
        .order_by("last_activity_at", "id")
        .first()
    )
    if victim is None:
        return Leased(email="", expires_at=None, refused="exhausted")
    now = max(now, victim.started_at, victim.last_activity_at)
    Lease.objects.filter(pk=victim.pk).update(released_at=now, end_reason=Lease.EndReason.TAKEN_OVER)
    Address.objects.filter(pk=victim.address_id).update(last_released_at=now, held=False)
    # The victim's next page view must not be answered from the fast path.
    transaction.on_commit(lambda: activity.forget_visitor(victim.visitor_id))
    lease = _new_lease(pool, victim.address, visitor_id, now, ip_hash, block_id)
    return Leased(victim.address.email, lease.expires_at, lease)


def purge_old_leases(now: datetime) -> int:
    """Released leases older than RETENTION_DAYS that nothing refers to (a
    lead keeps the lease it was attributed through) are deleted, so the table
    that grows with every visitor stays bounded."""
    cutoff = now - timedelta(days=getattr(settings, "RETENTION_DAYS", 90))
    unreferenced = [
        ~Exists(rel.related_model._base_manager.filter(**{rel.field.name: OuterRef("pk")}))
        for rel in Lease._meta.related_objects
        if not rel.many_to_many
    ]
    deleted, _ = Lease.objects.filter(*unreferenced, released_at__lt=cutoff).delete()
    return deleted
