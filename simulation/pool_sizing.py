"""A pool's recommended size from its sites' own traffic, computed by a
Celery task (`tasks.simulate_pool`) and cached in `PoolSimulation`; `advice`
offers it to the pool page."""

import logging
from dataclasses import replace

from django.utils import timezone

from substitution.models import Pool

from . import services
from .models import PoolSimulation
from .sandbox import PoolShape
from .scenario import plan

log = logging.getLogger(__name__)

SEED = 21


def simulate_pool(
    pool_id: int,
    *,
    days: float | None = None,
    sizes: list[int] | None = None,
    target: float = services.DEFAULT_TARGET,
    seed: int = SEED,
) -> str:
    """Learn the pool's sites' last week, simulate `days` of it (default: a
    week) over a range of sizes at the pool's hold and policy, and store the
    curve and the smallest size reaching `target`. Returns the status stored."""
    pool = Pool.objects.select_related("project").filter(pk=pool_id).first()
    if pool is None:
        return "gone"
    now = timezone.now()
    row, _created = PoolSimulation.objects.get_or_create(pool=pool, defaults={"requested_at": now})
    scenario = services.learned_scenario(services.pool_sites(pool), now, pool.project.time_zone)
    fields = {"computed_at": now, "target": target, "hold_minutes": pool.hold_minutes, "error": ""}
    if scenario is None:
        fields.update(status=PoolSimulation.Status.NOT_ENOUGH_TRAFFIC, recommended_size=None, curve=[])
    else:
        try:
            if days is not None:
                scenario = replace(scenario, days=days)
            traffic = plan(scenario, seed)
            sizes = sizes or services.default_sizes(scenario, pool.hold_minutes)
            start = services.virtual_start(now, scenario.days, pool.project.time_zone)
            points = services.simulate_sizes(traffic, PoolShape.of(pool), sizes, [pool.hold_minutes], start)
        except Exception as error:  # noqa: BLE001 - recorded on the row, shown on the pool page
            log.exception("The simulation of pool %s failed", pool_id)
            fields.update(status=PoolSimulation.Status.FAILED, error=f"{type(error).__name__}: {error}"[:1000])
        else:
            size = services.smallest_reaching(points, target)
            fields.update(
                status=PoolSimulation.Status.READY if size else PoolSimulation.Status.NOT_REACHED,
                recommended_size=size,
                curve=[curve_point(point) for point in points],
                visitors=len(traffic.visits),
            )
    PoolSimulation.objects.filter(pk=row.pk).update(**fields)
    return fields.get("status")


def curve_point(point: services.Point) -> dict:
    v = point.verdicts
    return {
        "size": point.size,
        "hold": point.hold,
        "letters": v.letters,
        "correct_visitor": v.correct_visitor,
        "correct_source": v.correct_source,
        "wrong_visitor": v.wrong_visitor,
        "wrong_source": v.wrong_source,
        "unknown": v.unknown,
        "exhaustions": v.exhaustions,
        "taken_over": v.taken_over,
    }
