"""Accuracy against pool size: simulations over a range of sizes and holds,
the smallest size that reaches a target, and a scenario learned from a
site's own traffic."""

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.db.models import F
from django.utils.translation import gettext

from substitution.models import Pool, Rule
from tracker.models import Session, Site

from .runner import Simulation
from .sandbox import PoolShape
from .scenario import Plan, Scenario
from .verdicts import Verdicts

DEFAULT_TARGET = 0.995
LEARN_DAYS = 7
MIN_SESSIONS = 200  # fewer in the last week: not enough traffic to learn from


@dataclass
class Point:
    size: int
    hold: int
    verdicts: Verdicts


def simulate_sizes(
    traffic: Plan,
    shape: PoolShape,
    sizes: list[int],
    holds: list[int],
    start: datetime,
    progress: Callable[[float], None] | None = None,
) -> list[Point]:
    """One simulation per size and hold, all on the same traffic."""
    points = []
    runs = [(hold, size) for hold in holds for size in sizes]
    for number, (hold, size) in enumerate(runs):

        def step(fraction, number=number):
            if progress:
                progress((number + fraction) / len(runs))

        shaped = PoolShape(**{**shape.__dict__, "size": size, "hold_minutes": hold})
        points.append(Point(size, hold, Simulation(traffic, shaped, start, progress=step).run()))
    return points


def smallest_reaching(points: list[Point], target: float, hold: int | None = None) -> int | None:
    """The smallest size whose share of correctly credited visitors reaches
    `target` (at `hold`, else at any hold), or None."""
    sizes = [p.size for p in points if (hold is None or p.hold == hold) and p.verdicts.visitor_accuracy >= target]
    return min(sizes, default=None)


def default_sizes(scenario: Scenario, hold: int) -> list[int]:
    """Sizes around the expected number of visitors holding an address at
    once (visitors an hour x (visit + hold) at the busiest hour), from a
    fifth of it to twenty times it."""
    peak = scenario.visitors_per_hour * max(scenario.profile) / (sum(scenario.profile) / 24)
    visit = math.exp(math.log(scenario.session_median) + scenario.session_sigma**2 / 2)
    concurrent = max(1.0, peak * (visit + hold) / 60)
    factors = (0.2, 0.5, 0.75, 1, 1.25, 1.5, 2, 3, 5, 10, 20)
    return sorted({max(1, round(concurrent * f)) for f in factors})


def virtual_start(now: datetime, days: float, time_zone: str) -> datetime:
    """Where a simulation's clock starts: a local midnight far enough back
    that the simulated days end before `now` (the hourly profile is by local
    hour, minute 0 of the plan is hour 0)."""
    tz = ZoneInfo(time_zone)
    day = (now - timedelta(days=days + 1)).astimezone(tz).date()
    return datetime.combine(day, datetime.min.time(), tzinfo=tz)


def parse_sizes(text: str) -> list[int]:
    """ "10,20,40" → [10, 20, 40]; a clear ValueError otherwise."""
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(gettext("Sizes must be whole numbers separated by commas, e.g. 10,20,40.")) from None
    if not sizes or sizes[0] < 1 or sizes[-1] > 100_000:
        raise ValueError(gettext("Sizes must be between 1 and 100000."))
    return sizes


def site_pool(site: Site) -> Pool | None:
    """The pool of the site's first active dynamic rule."""
    rule = (
        Rule.objects.filter(sites=site, active=True, kind=Rule.Kind.DYNAMIC, pool__isnull=False)
        .select_related("pool__project")
        .order_by("order", "id")
        .first()
    )
    return rule.pool if rule else None


def pool_sites(pool: Pool) -> list[int]:
    return list(Site.objects.filter(rules__pool=pool, rules__active=True).distinct().values_list("id", flat=True))


def learned_scenario(site_ids: list[int], now: datetime, time_zone: str, days: int = LEARN_DAYS) -> Scenario | None:
    """The hourly profile, the rate of new visitors and the length of visits
    of the sites' last `days` days of sessions (the rest: the defaults);
    None when they had fewer than MIN_SESSIONS sessions."""
    since = now - timedelta(days=days)
    rows = list(
        Session.objects.filter(visitor__site_id__in=site_ids, started_at__gte=since, started_at__lt=now)
        .annotate(length=F("last_seen_at") - F("started_at"))
        .values_list("started_at", "length", "returning_visitor")
    )
    if len(rows) < MIN_SESSIONS:
        return None
    tz = ZoneInfo(time_zone)
    hours = [0.0] * 24
    for started, _length, _returning in rows:
        hours[started.astimezone(tz).hour] += 1
    new = sum(1 for _s, _l, returning in rows if not returning)
    lengths = [max(length.total_seconds() / 60, 0.25) for _s, length, _r in rows]
    logs = [math.log(x) for x in lengths]
    return Scenario(
        days=days,
        visitors_per_hour=max(new, 1) / (days * 24),
        profile=tuple(h + 0.01 for h in hours),  # no hour quite empty
        session_median=math.exp(statistics.median(logs)),
        session_sigma=min(max(statistics.pstdev(logs), 0.1), 2.5),
        return_share=min((len(rows) - new) / len(rows), 0.9),
    )
