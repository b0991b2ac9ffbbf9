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

from tracker.models import Site, Visitor

from . import tokens
from .models import Address, Block, Lease, Pool, PoolExhaustion, Rule

log = logging.getLogger(__name__)

ALLOCATION_ATTEMPTS = 5


def pool_address_for_token(pool: Pool, token: str) -> str:
    local, domain = pool.base_email.lower().split("@", 1)
    separator = "+" if pool.kind == Pool.Kind.PLUS else "-"
    return f"{local}{separator}{token}@{domain}"


def pool_fill(pool: Pool) -> int:
    """Issue addresses until the pool holds `size` active ones. Never deletes an
    address or touches a lease: shrinking a pool only deactivates the addresses
    released longest ago, so live leases and history stay intact."""
    with transaction.atomic():
        pool = Pool.objects.select_for_update().get(pk=pool.pk)
        active = pool.addresses.filter(active=True)
        missing = pool.size - active.count()
        if missing < 0:
            # Not `exclude(leases__released_at__isnull=True)`: across the LEFT JOIN that
            # also spares every never-leased address, so a fresh pool never shrank.
            live = Lease.objects.filter(pool=pool, released_at__isnull=True).values("address_id")
            surplus = (
                active.exclude(id__in=live)
                .order_by(F("last_released_at").asc(nulls_first=True), "id")
                .values_list("id", flat=True)[:-missing]
            )
            return -Address.objects.filter(id__in=list(surplus)).update(active=False)
        if missing == 0:
            return 0
        # Reactivate addresses set aside by an earlier shrink before issuing new ones.
        revived = list(pool.addresses.filter(active=False).values_list("id", flat=True)[:missing])
        Address.objects.filter(id__in=revived).update(active=True)
        missing -= len(revived)
        existing = list(pool.addresses.values_list("token", flat=True))
        length = max([tokens.token_length(pool.size)] + [len(t) for t in existing])
        fresh = tokens.new_tokens(missing, existing, length)
        Address.objects.bulk_create([Address(pool=pool, token=t, email=pool_address_for_token(pool, t)) for t in fresh])
        return len(revived) + len(fresh)


def release_expired_leases(pool: Pool, now: datetime) -> int:
    """End every lease of the pool whose hold has run out; the address becomes
    free as of the lease's expiry (which is what LRU and attribution read)."""
    with transaction.atomic():
        expired = list(
            Lease.objects.select_for_update(skip_locked=True)
            .filter(pool=pool, released_at__isnull=True, expires_at__lte=now)
            .values_list("id", "address_id", "expires_at")
        )
        for lease_id, address_id, expires_at in expired:
            Lease.objects.filter(id=lease_id).update(released_at=expires_at, end_reason=Lease.EndReason.EXPIRED)
            Address.objects.filter(id=address_id).update(last_released_at=expires_at)
        return len(expired)


@dataclass
class Allocation:
    email: str
    expires_at: datetime | None
    lease: Lease | None = None


def lease_acquire(*, pool: Pool, visitor: Visitor, now: datetime) -> Allocation:
    """The visitor's address in this pool: their live lease (extended), else
    their previous address if free, else the free address released longest
    ago. When none is free the pool's exhaustion policy applies and the event
    is recorded."""
    for _attempt in range(ALLOCATION_ATTEMPTS):
        try:
            with transaction.atomic():
                return _lease_acquire_once(pool, visitor, now)
        except IntegrityError:
            # Another request took the address (or leased this visitor) first.
            continue
    log.warning("Allocation gave up after %s conflicts in pool %s", ALLOCATION_ATTEMPTS, pool.pk)
    return Allocation(email="", expires_at=None)


def _extend(lease: Lease, pool: Pool, now: datetime) -> Lease:
    lease.last_activity_at = now
    lease.expires_at = now + timedelta(minutes=pool.hold_minutes)
    Lease.objects.filter(pk=lease.pk).update(last_activity_at=lease.last_activity_at, expires_at=lease.expires_at)
    return lease


def _lease_acquire_once(pool: Pool, visitor: Visitor, now: datetime) -> Allocation:
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
        Address.objects.filter(pk=current.address_id).update(last_released_at=current.expires_at)

    release_expired_leases(pool, now)
    address = _free_address(pool, visitor)
    if address is None:
        return _exhausted(pool, visitor, now)
    lease = Lease.objects.create(
        pool=pool,
        address=address,
        visitor=visitor,
        started_at=now,
        last_activity_at=now,
        expires_at=now + timedelta(minutes=pool.hold_minutes),
    )
    return Allocation(address.email, lease.expires_at, lease)


def _free_address(pool: Pool, visitor: Visitor) -> Address | None:
    held = Lease.objects.filter(pool=pool, released_at__isnull=True).values("address_id")
    free = Address.objects.filter(pool=pool, active=True).exclude(id__in=held)
    previous = Lease.objects.filter(pool=pool, visitor=visitor).order_by("-started_at").values("address_id")[:1]
    returning = free.filter(id__in=previous).select_for_update(skip_locked=True).first()
    if returning is not None:
        return returning
    return free.order_by(F("last_released_at").asc(nulls_first=True), "id").select_for_update(skip_locked=True).first()


def _exhausted(pool: Pool, visitor: Visitor, now: datetime) -> Allocation:
    PoolExhaustion.objects.create(pool=pool, at=now, policy=pool.exhausted_policy)
    if pool.exhausted_policy != Pool.ExhaustedPolicy.TAKE_OVER:
        return Allocation(email="", expires_at=None)
    victim = (
        Lease.objects.select_for_update(skip_locked=True)
        .select_related("address")
        .filter(pool=pool, released_at__isnull=True)
        .order_by("last_activity_at", "id")
        .first()
    )
    if victim is None:
        return Allocation(email="", expires_at=None)
    Lease.objects.filter(pk=victim.pk).update(released_at=now, end_reason=Lease.EndReason.TAKEN_OVER)
    Address.objects.filter(pk=victim.address_id).update(last_released_at=now)
    lease = Lease.objects.create(
        pool=pool,
        address=victim.address,
        visitor=visitor,
        started_at=now,
        last_activity_at=now,
        expires_at=now + timedelta(minutes=pool.hold_minutes),
    )
    return Allocation(victim.address.email, lease.expires_at, lease)


@dataclass
class Substitution:
    subs: list[dict]
    expires_at: datetime | None


def rules_for_site(site: Site) -> list[Rule]:
    return list(
        Rule.objects.filter(sites=site, active=True)
        .select_related("pool")
        .prefetch_related("blocks")
        .order_by("order", "id")
    )


def substitute(*, site: Site, visitor: Visitor | None, now: datetime, rules: list[Rule] | None = None) -> Substitution:
    """Evaluate the site's rules, first match wins, and answer with the address
    for each of its blocks. Without a visitor (no consent) dynamic rules do
    not apply. An empty answer means: keep the original address."""
    for rule in rules if rules is not None else rules_for_site(site):
        if rule.kind == Rule.Kind.DYNAMIC:
            if visitor is None:
                continue
            allocation = lease_acquire(pool=rule.pool, visitor=visitor, now=now)
            if not allocation.email:
                return Substitution(subs=[], expires_at=None)
            subs = [{"block": block.pk, "email": allocation.email} for block in rule.blocks.all()]
            return Substitution(subs=subs, expires_at=allocation.expires_at)
    return Substitution(subs=[], expires_at=None)


def blocks_for_site(site: Site) -> list[Block]:
    return list(Block.objects.filter(rules__sites=site, rules__active=True).distinct().order_by("id"))
