"""The traffic of a simulation, planned before any service runs: who comes
when, for how long, from which channel, who comes back, who writes and to
which address they saw. Pure Python, no database: the same scenario and seed
give the same plan, so every pool size and hold is measured on the same
visitors (the curve compares like with like).

Times are minutes from the start of the simulation (virtual time).
"""

import functools
import itertools
import math
import random
from dataclasses import dataclass, field

# A weekday's shape of traffic by hour of day (relative; scaled to the mean rate).
DEFAULT_PROFILE = (
    0.25, 0.15, 0.1, 0.1, 0.1, 0.2, 0.4, 0.7, 1.1, 1.4, 1.6, 1.6,
    1.5, 1.5, 1.6, 1.6, 1.5, 1.4, 1.3, 1.3, 1.2, 1.0, 0.7, 0.4,
)  # fmt: skip

# Where visitors come from: (weight, landing URL query, referrer). The tracker
# classifies them as it classifies real page views.
CHANNELS = (
    (0.30, "?utm_source=yandex&utm_medium=cpc&utm_campaign=brand", ""),
    (0.15, "?utm_source=google&utm_medium=cpc&utm_campaign=generic", ""),
    (0.25, "", "https://www.google.com/"),
    (0.10, "", "https://vk.com/"),
    (0.05, "", "https://partner.example/review"),
    (0.15, "", ""),
)


@dataclass(frozen=True)
class Scenario:
    """Every parameter of the traffic. Durations in minutes unless named otherwise."""

    days: float = 7
    visitors_per_hour: float = 100  # new visitors, on average over the day
    profile: tuple = DEFAULT_PROFILE  # 24 relative weights, hour 0 first
    session_median: float = 3.0  # lognormal length of a visit
    session_sigma: float = 1.0
    session_max: float = 240
    page_view_every: float = 1.5  # mean minutes between page views (exponential)
    return_share: float = 0.25  # chance a visitor comes back after a visit
    return_median_hours: float = 20.0  # lognormal time to come back
    return_sigma: float = 1.2
    max_visits: int = 5
    write_share: float = 0.04  # chance a visit ends in a letter
    # When the letter is written, after seeing the address: during the visit,
    # within hours (exponential), or days later (uniform over 1..days_later_max).
    write_during: float = 0.6
    write_hours: float = 0.3
    write_days: float = 0.1
    hours_mean: float = 2.0
    days_later_max: float = 3.0
    earlier_address_share: float = 0.2  # a returning writer uses an address from an earlier visit
    mail_delay_seconds: tuple = (2, 60)  # from sending to reaching the mailbox
    channels: tuple = CHANNELS

    def __post_init__(self):
        if len(self.profile) != 24 or min(self.profile) < 0 or sum(self.profile) <= 0:
            raise ValueError("The hourly profile needs 24 weights, not all zero, none negative.")
        if self.days <= 0 or self.visitors_per_hour < 0:
            raise ValueError("Days must be positive and the rate not negative.")


@dataclass
class PlannedVisit:
    start: float
    end: float
    query: str  # the landing URL's query (campaign tags)
    referrer: str
    page_views: list[float] = field(default_factory=list)  # times of page views after the landing


@dataclass
class PlannedLetter:
    """A letter the plan says will be written: by which visitor, after which
    visit, when it reaches the mailbox, and the visit whose address it uses
    (`seen_visit`; during the visit: the address shown at `written`)."""

    visitor: int
    visit: int
    seen_visit: int
    written: float
    arrives: float
    during: bool


@dataclass
class Plan:
    scenario: Scenario
    visits: list[list[PlannedVisit]]  # per visitor, in order
    letters: list[PlannedLetter]

    @property
    def visit_count(self) -> int:
        return sum(len(v) for v in self.visits)


def _arrivals(scenario: Scenario, rng: random.Random) -> list[float]:
    """A Poisson process whose rate follows the hourly profile."""
    mean = sum(scenario.profile) / 24
    horizon = scenario.days * 24 * 60
    times, t = [], 0.0
    while t < horizon:
        hour = int(t // 60)
        rate = scenario.visitors_per_hour * scenario.profile[hour % 24] / mean / 60  # per minute
        boundary = (hour + 1) * 60
        step = rng.expovariate(rate) if rate > 0 else math.inf
        if t + step >= boundary:
            t = boundary  # memoryless: start the next hour afresh
            continue
        t += step
        times.append(t)
    return times


def _visit(scenario: Scenario, start: float, rng: random.Random) -> PlannedVisit:
    length = min(rng.lognormvariate(math.log(scenario.session_median), scenario.session_sigma), scenario.session_max)
    _weight, query, referrer = rng.choices(scenario.channels, cum_weights=_cumulative(scenario.channels))[0]
    visit = PlannedVisit(start=start, end=start + length, query=query, referrer=referrer)
    t = start
    while scenario.page_view_every > 0:
        t += rng.expovariate(1 / scenario.page_view_every)
        if t >= visit.end:
            break
        visit.page_views.append(t)
    return visit


@functools.cache
def _cumulative(channels: tuple) -> list[float]:
    return list(itertools.accumulate(c[0] for c in channels))


def _written(scenario: Scenario, visit: PlannedVisit, rng: random.Random) -> tuple[float, bool]:
    weights = (scenario.write_during, scenario.write_hours, scenario.write_days)
    kind = rng.choices(("during", "hours", "days"), weights=weights)[0]
    if kind == "during":
        return rng.uniform(visit.start, visit.end), True
    if kind == "hours":
        return visit.end + rng.expovariate(1 / (scenario.hours_mean * 60)), False
    return visit.end + rng.uniform(1, scenario.days_later_max) * 24 * 60, False


def plan(scenario: Scenario, seed: int) -> Plan:
    """The whole traffic of a run, repeatable by `seed`."""
    rng = random.Random(seed)
    horizon = scenario.days * 24 * 60
    visits: list[list[PlannedVisit]] = []
    letters: list[PlannedLetter] = []
    for arrival in _arrivals(scenario, rng):
        own = [_visit(scenario, arrival, rng)]
        while len(own) < scenario.max_visits and rng.random() < scenario.return_share:
            hours = rng.lognormvariate(math.log(scenario.return_median_hours), scenario.return_sigma)
            start = own[-1].end + max(hours * 60, 31)  # a new session (SESSION_TIMEOUT is 30 minutes)
            if start >= horizon:
                break
            own.append(_visit(scenario, start, rng))
        index = len(visits)
        for number, visit in enumerate(own):
            if rng.random() >= scenario.write_share:
                continue
            written, during = _written(scenario, visit, rng)
            seen = number
            if not during and number > 0 and rng.random() < scenario.earlier_address_share:
                seen = rng.randrange(number)
            delay = rng.uniform(*scenario.mail_delay_seconds) / 60
            letters.append(PlannedLetter(index, number, seen, written, written + delay, during))
        visits.append(own)
    letters.sort(key=lambda letter: letter.arrives)
    return Plan(scenario, visits, letters)
