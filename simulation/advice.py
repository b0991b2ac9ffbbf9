"""The simulation's answer to substitution's size advisors (registered in
SimulationConfig.ready): the cached result for a pool, refreshed daily."""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from substitution.models import Pool
from substitution.pools import SimulatedSize

from .models import PoolSimulation
from .tasks import simulate_pool

FRESH_FOR = timedelta(days=1)
RETRY_AFTER = timedelta(hours=1)  # a request not answered by then is made again


def simulated_size(pool: Pool) -> SimulatedSize:
    """The cached result for the pool; asks for a new one when there is none
    or it is older than a day (one request at a time: a conditional update
    claims it)."""
    now = timezone.now()
    row, created = PoolSimulation.objects.get_or_create(pool=pool, defaults={"requested_at": now})
    stale = row.computed_at is None or row.computed_at < now - FRESH_FOR
    if created or (stale and row.requested_at < now - RETRY_AFTER):
        claimed = created or PoolSimulation.objects.filter(pk=row.pk, requested_at=row.requested_at).update(
            requested_at=now
        )
        if claimed:
            transaction.on_commit(lambda: simulate_pool.delay(pool.pk))
    curve = tuple(
        (point["size"], point["correct_visitor"] / point["letters"] if point["letters"] else 1.0) for point in row.curve
    )
    accuracy = dict(curve).get(row.recommended_size) if row.recommended_size else None
    return SimulatedSize(
        status=row.status,
        size=row.recommended_size,
        target=row.target,
        accuracy=accuracy,
        curve=curve,
        computed_at=row.computed_at,
        hold_minutes=row.hold_minutes,
    )


def _share(point: dict) -> float:
    return point["correct_visitor"] / point["letters"] if point["letters"] else 1.0
