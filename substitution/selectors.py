"""Reads about pools: live leases, peak concurrency, exhaustions, health."""

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Q

from . import pools
from .models import Block, Lease, Pool, PoolExhaustion

HEALTH_DAYS = 7
SIZE_MARGIN = 1.25  # head-room over the observed peak


def _leases(pool: Pool, block_id: int | None):
    """The pool's leases, or those shown in one block (a pool may serve several)."""
    leases = Lease.objects.filter(pool=pool)
    return leases if block_id is None else leases.filter(block_id=block_id)


def pool_blocks(pool: Pool) -> list[Block]:
    """The blocks a pool serves: those its rules cover, and those its leases
    were shown in (a rule may have changed since)."""
    return list(Block.objects.filter(Q(rules__pool=pool) | Q(leases__pool=pool)).distinct().order_by("name", "pk"))


def live_lease_count(pool: Pool, now: datetime, block_id: int | None = None) -> int:
    return _leases(pool, block_id).filter(released_at__isnull=True, expires_at__gt=now).count()


def exhaustion_count(pool: Pool, now: datetime, days: int = HEALTH_DAYS) -> int:
    return PoolExhaustion.objects.filter(pool=pool, at__gte=now - timedelta(days=days)).count()


def peak_per_day(
    pool: Pool, now: datetime, days: int = HEALTH_DAYS, block_id: int | None = None
) -> list[tuple[date, int]]:
    """Most leases held at once on each of the last `days` days (the project's
    days), from the lease history: a lease counts from its start to its
    release, or to its expiry while unreleased."""
    tz = ZoneInfo(pool.project.time_zone)
    today = now.astimezone(tz).date()
    first_day = today - timedelta(days=days - 1)
    window_start = datetime.combine(first_day, datetime.min.time(), tzinfo=tz)
    leases = (
        _leases(pool, block_id)
        .filter(started_at__lt=now)
        .filter(Q(released_at__isnull=True, expires_at__gt=window_start) | Q(released_at__gt=window_start))
    )
    events = []
    for started, released, expires in leases.values_list("started_at", "released_at", "expires_at"):
        end = released or min(expires, now)
        events.append((max(started, window_start), 1))
        events.append((end, -1))
    events.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    day_starts = [
        (first_day + timedelta(days=i), datetime.combine(first_day + timedelta(days=i), datetime.min.time(), tzinfo=tz))
        for i in range(days)
    ]
    peaks = {}
    level, i = 0, 0
    for day, start in day_starts:
        end = start + timedelta(days=1)
        while i < len(events) and events[i][0] < start:
            level += events[i][1]
            i += 1
        peak = level  # leases carried over from the day before
        while i < len(events) and events[i][0] < end:
            level += events[i][1]
            peak = max(peak, level)
            i += 1
        peaks[day] = peak
    return sorted(peaks.items())


@dataclass
class PoolHealth:
    size: int
    live: int
    peaks: list[tuple[date, int]]
    exhaustions: int
    recommended: int
    too_small: bool
    basis: str = pools.PEAK  # what `recommended` rests on: pools.PEAK or pools.SIMULATED
    advice: pools.SizeAdvice | None = None  # with the simulated result, if any (whole pool only)


def peak_recommendation(peak: int) -> int:
    """The highest daily peak (which already spans session plus hold) with a margin."""
    return max(math.ceil(peak * SIZE_MARGIN), peak + 1) if peak else 0


def pool_health(pool: Pool, now: datetime, block_id: int | None = None) -> PoolHealth:
    """Live leases, daily peaks, exhaustions and a recommended size: the size
    simulated on the pool's own traffic where a fresh result says one reaches
    the target (pools.pool_recommendation), else the peak with a margin;
    `basis` says which. With `block_id`, the leases shown in that block only
    (the simulation is of the whole pool: there the peak's)."""
    peaks = peak_per_day(pool, now, block_id=block_id)
    peak = max((p for _d, p in peaks), default=0)
    size = pool.addresses.filter(active=True).count()
    exhaustions = exhaustion_count(pool, now)
    recommended, advice = peak_recommendation(peak), None
    if block_id is None:
        advice = pools.pool_recommendation(pool, recommended)
        recommended = advice.size
    return PoolHealth(
        size=size,
        live=live_lease_count(pool, now, block_id),
        peaks=peaks,
        exhaustions=exhaustions,
        recommended=recommended,
        too_small=exhaustions > 0 or recommended > size,
        basis=advice.basis if advice else pools.PEAK,
        advice=advice,
    )
