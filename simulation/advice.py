"""The simulation's answer to substitution's size advisors (registered in
SimulationConfig.ready): the cached result for a pool, and the beat's
request for the results that are missing or older than a day.

Reading a result never asks for one: the pool page, the pool health of the
API and the monitoring alerts all read it, every few minutes for every
pool. The beat (`tasks.simulate_stale_pools`, hourly) asks instead, once per
pool at a time (a conditional update claims the request)."""

from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from substitution.models import Pool, Rule
from substitution.pools import SimulatedSize

from .models import PoolSimulation
from .sandbox import scratch_projects

FRESH_FOR = timedelta(days=1)  # recomputed once a result is older than this
USABLE_FOR = timedelta(days=2)  # shown as the recommendation until then (a week's run takes a while)
RETRY_AFTER = timedelta(hours=1)  # a request not answered by then is made again


def simulated_size(pool: Pool) -> SimulatedSize | None:
    """The pool's cached result (None: never asked for). One older than
    USABLE_FOR, or simulated at another hold than the pool's now, counts as
    being computed: the peak recommendation is used meanwhile."""
    row = PoolSimulation.objects.filter(pool=pool).first()
    if row is None:
        return None
    status = row.status
    old = row.computed_at is None or row.computed_at < timezone.now() - USABLE_FOR
    if old or (row.hold_minutes is not None and row.hold_minutes != pool.hold_minutes):
        status = PoolSimulation.Status.PENDING
    curve = tuple(
        (point["size"], point["correct_visitor"] / point["letters"] if point["letters"] else 1.0) for point in row.curve
    )
    accuracy = dict(curve).get(row.recommended_size) if row.recommended_size else None
    return SimulatedSize(
        status=status,
        size=row.recommended_size,
        target=row.target,
        accuracy=accuracy,
        curve=curve,
        computed_at=row.computed_at,
        hold_minutes=row.hold_minutes,
    )


def pools_in_use():
    """Pools a site's active dynamic rule leases from (scratch projects' aside)."""
    in_use = Rule.objects.filter(pool=OuterRef("pk"), active=True, kind=Rule.Kind.DYNAMIC)
    return Pool.objects.filter(Exists(in_use)).exclude(project__in=scratch_projects())


def request_stale_simulations(enqueue: Callable[[int], object], now: datetime | None = None) -> list[int]:
    """Ask for a simulation of every pool in use whose result is missing,
    older than FRESH_FOR or at another hold than the pool's, unless one was asked for less than RETRY_AFTER ago:
    `enqueue(pool_id)` once the claim is committed. Returns the pools asked for."""
    now = now or timezone.now()
    outdated = (
        Q(simulation__computed_at__isnull=True)
        | Q(simulation__computed_at__lt=now - FRESH_FOR)
        | ~Q(simulation__hold_minutes=F("hold_minutes"))  # the pool's hold changed since
    )
    stale = Q(simulation__isnull=True) | (outdated & Q(simulation__requested_at__lt=now - RETRY_AFTER))
    asked = []
    for pool_id in pools_in_use().filter(stale).values_list("pk", flat=True):
        row, created = PoolSimulation.objects.get_or_create(pool_id=pool_id, defaults={"requested_at": now})
        claimed = created or PoolSimulation.objects.filter(
            pk=row.pk, requested_at=row.requested_at, requested_at__lt=now - RETRY_AFTER
        ).update(requested_at=now)
        if claimed:
            transaction.on_commit(lambda pool_id=pool_id: enqueue(pool_id))
            asked.append(pool_id)
    return asked
