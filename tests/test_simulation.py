"""The attribution simulator (issue 21): real services in virtual time,
verdicts against ground truth, and pool sizes that follow from it."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from attribution.models import MatchKind
from journal.selectors import journal_projects
from monitoring.models import Condition, Kind
from monitoring.services import health_evaluate_all
from projects.models import Project
from simulation.runner import Simulation, requests_of
from simulation.sandbox import PoolShape, make_sandbox, remove_leftovers
from simulation.scenario import Plan, PlannedLetter, PlannedVisit, Scenario, plan
from simulation.services import simulate_sizes, smallest_reaching
from simulation.verdicts import CORRECT, UNKNOWN, WRONG
from substitution.models import Lease, Pool, PoolExhaustion
from tests.factories import make_setup
from tracker.models import Visitor

pytestmark = pytest.mark.django_db

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
PAID = "?utm_source=yandex&utm_medium=cpc&utm_campaign=brand"


def test_a_tiny_scenario_gives_the_hand_computed_verdicts():
    """One address, a hold of 10 minutes, "show original":
    A lands at 0:00 and takes the address (active until 0:05, held until
    0:15) and writes at 0:02 → correct, live lease. B lands at 0:01 and again
    at 0:03 while A holds it: exhausted twice, shown the original; B's letter
    at 0:02 → unknown (pool exhausted). C lands at 0:20 (A's hold ran out at
    0:15) and takes the same address until 0:32; A writes again at 0:30 to
    the address A saw → credited to C: wrong visitor and wrong source."""
    visits = [
        [PlannedVisit(start=0, end=5, query=PAID, referrer="")],
        [PlannedVisit(start=1, end=3, query="", referrer="")],
        [PlannedVisit(start=20, end=22, query="", referrer="https://www.google.com/")],
    ]
    letters = [
        PlannedLetter(visitor=0, visit=0, seen_visit=0, written=2, arrives=2.5, during=True),
        PlannedLetter(visitor=1, visit=0, seen_visit=0, written=2, arrives=2.6, during=True),
        PlannedLetter(visitor=0, visit=0, seen_visit=0, written=30, arrives=30.5, during=False),
    ]
    tiny = Plan(Scenario(days=1), visits, letters)
    shape = PoolShape(size=1, hold_minutes=10, exhausted_policy=Pool.ExhaustedPolicy.ORIGINAL)

    verdicts = Simulation(tiny, shape, START).run()

    assert [(d.letter, d.visitor, d.credited, d.verdict, d.source_ok, d.match_kind) for d in verdicts.details] == [
        (0, 0, 0, CORRECT, True, MatchKind.LIVE_LEASE),
        (1, 1, None, UNKNOWN, False, MatchKind.EXHAUSTED),
        (2, 0, 2, WRONG, False, MatchKind.LIVE_LEASE),
    ]
    assert (verdicts.letters, verdicts.correct_visitor, verdicts.correct_source) == (3, 1, 1)
    assert (verdicts.wrong_visitor, verdicts.wrong_source, verdicts.unknown) == (1, 1, 1)
    assert verdicts.exhaustions == 2
    # Requests: A at 0:00 and 0:05, B at 0:01 and 0:03, C at 0:20 and 0:22.
    assert verdicts.requests == 6


def test_the_simulation_leaves_nothing_behind():
    tiny = Plan(Scenario(days=1), [[PlannedVisit(start=0, end=2, query="", referrer="")]], [])
    Simulation(tiny, PoolShape(size=2), START).run()
    assert not Visitor.objects.exists()
    assert not Lease.objects.exists()
    assert not Pool.objects.exists()


def test_heartbeats_are_sent_often_enough_to_keep_every_decision():
    """A 40-minute visit with a 10-minute hold: no gap between the requests
    sent reaches the hold, and the visit's last activity is sent."""
    visit = PlannedVisit(start=0, end=40, query="", referrer="", page_views=[1, 2, 13.5])
    sent = requests_of(Plan(Scenario(days=1), [[visit]], []), step=5)
    times = [r[0] for r in sent]
    assert times[0] == 0 and times[-1] == 40
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) <= 5
    assert [r[3] for r in sent][0] == "land"


def test_show_original_never_credits_a_wrong_source_however_small_the_pool():
    """A pool of one address under heavy traffic, every letter written during
    the visit: exhausted visitors see the original and their letters are
    unknown, never another visitor's."""
    scenario = Scenario(
        days=0.1,
        visitors_per_hour=60,
        return_share=0,
        write_share=0.4,
        write_during=1,
        write_hours=0,
        write_days=0,
    )
    traffic = plan(scenario, seed=3)
    shape = PoolShape(size=1, hold_minutes=30, exhausted_policy=Pool.ExhaustedPolicy.ORIGINAL)

    verdicts = Simulation(traffic, shape, START).run()

    assert verdicts.letters >= 10
    assert verdicts.exhaustions > 0
    assert verdicts.unknown > 0
    assert verdicts.wrong_source == 0
    assert verdicts.wrong_visitor == 0


def test_take_over_reports_the_letters_it_credits_wrongly():
    scenario = Scenario(
        days=0.1,
        visitors_per_hour=60,
        return_share=0,
        write_share=0.4,
        write_during=1,
        write_hours=0,
        write_days=0,
    )
    traffic = plan(scenario, seed=3)
    shape = PoolShape(size=1, hold_minutes=30, exhausted_policy=Pool.ExhaustedPolicy.TAKE_OVER)

    verdicts = Simulation(traffic, shape, START).run()

    assert verdicts.taken_over > 0
    assert verdicts.wrong_visitor > 0
    assert verdicts.wrong_visitor + verdicts.correct_visitor + verdicts.unknown == verdicts.letters


def test_the_recommended_size_reaches_the_target_on_traffic_it_was_not_chosen_on():
    scenario = Scenario(
        days=1,
        visitors_per_hour=5,
        write_share=0.5,
        write_during=0.6,
        write_hours=0.4,
        write_days=0,
        hours_mean=1,
        return_share=0.2,
        return_median_hours=1,
    )
    shape = PoolShape(size=1, hold_minutes=15)
    points = simulate_sizes(plan(scenario, seed=1), shape, [1, 12, 40, 80], [15], START)
    accuracy = {p.size: p.verdicts.visitor_accuracy for p in points}
    assert accuracy[1] < 0.995  # the range tried spans the target
    recommended = smallest_reaching(points, 0.995)
    assert recommended is not None

    fresh = plan(scenario, seed=2)
    verdicts = Simulation(fresh, PoolShape(size=recommended, hold_minutes=15), START).run()

    assert verdicts.letters >= 40
    assert verdicts.visitor_accuracy >= 0.995


def test_a_scratch_project_left_by_a_run_that_died_is_removed_a_day_later():
    old = make_sandbox(PoolShape(size=1))
    young = make_sandbox(PoolShape(size=1))
    Project.objects.filter(pk=old.project.pk).update(created_at=timezone.now() - timedelta(days=2))
    real = Project.objects.create(name="Simulation (scratch, deleted after the run)")

    assert remove_leftovers() == 1

    assert set(Project.objects.values_list("pk", flat=True)) == {young.project.pk, real.pk}


def test_no_one_sees_a_scratch_project_while_a_run_lasts(admin_client):
    """A superuser's admin lists pools, addresses, leases, exhaustions and
    health conditions without the scratch project's, and the health beat
    never evaluates it (its pool runs dry on purpose)."""
    real = make_setup(name="Real shop")
    sandbox = make_sandbox(PoolShape(size=1))
    now = timezone.now()
    for pool in (real.pool, sandbox.pool):
        PoolExhaustion.objects.create(pool=pool, at=now - timedelta(minutes=5), policy="original")
    health_evaluate_all(now)
    Condition.objects.create(
        project=sandbox.project,
        kind=Kind.POOL_EXHAUSTED,
        subject="pool:0",
        summary="Scratch pool ran dry",
        started_at=now,
    )

    assert set(Condition.objects.filter(kind=Kind.POOL_EXHAUSTED).values_list("project_id", flat=True)) == {
        real.project.pk,
        sandbox.project.pk,  # only the one made by hand above
    }
    for page in ("substitution/pool", "substitution/address", "substitution/poolexhaustion", "substitution/rule"):
        listed = admin_client.get(f"/admin/{page}/").content.decode()
        assert "Real shop" in listed, page
        assert "simulation.invalid" not in listed and "Simulation" not in listed, page
    assert admin_client.get(f"/admin/substitution/pool/{sandbox.pool.pk}/change/").status_code == 302
    conditions = admin_client.get("/admin/monitoring/condition/").content.decode()
    assert "Real shop pool" in conditions and "Scratch pool ran dry" not in conditions
    for page in ("projects/project", "tracker/site", "mailbox_sync/mailbox"):
        response = admin_client.get(f"/admin/{page}/")
        listed = response.content.decode()
        assert response.status_code == 200, page
        assert "simulation.invalid" not in listed and "Simulation" not in listed, page
    superuser = get_user_model().objects.get(username="admin")
    assert sandbox.project not in journal_projects(superuser)
    assert real.project in journal_projects(superuser)


@pytest.mark.django_db(transaction=True)
def test_fewer_heartbeats_and_the_fast_path_leave_every_verdict_as_every_minutes_beat():
    """The same traffic three ways: every minute's heartbeat written through
    (what the snippet sends, the step-by-step mode), one beat every few
    minutes written through, and those beats through collect's Redis fast
    path with activity flushed every virtual minute. A pool that never runs
    dry but whose addresses are reused (a short hold, letters written hours
    later): the same letters credited to the same visitors by the same kind
    of match, with far fewer requests."""
    scenario = Scenario(
        days=0.1,
        visitors_per_hour=40,
        profile=(1,) * 24,
        session_median=6,
        return_share=0.3,
        return_median_hours=0.7,
        write_share=0.5,
        write_during=0.5,
        write_hours=0.5,
        write_days=0,
        hours_mean=0.5,
    )
    traffic = plan(scenario, seed=8)
    shape = PoolShape(size=30, hold_minutes=10)

    every_minute = Simulation(traffic, shape, START, step=1, written_behind=False).run()
    through, behind = Counter(), Counter()
    with connection.execute_wrapper(_counting(through)):
        fewer = Simulation(traffic, shape, START, written_behind=False).run()
    with connection.execute_wrapper(_counting(behind)):
        fast = Simulation(traffic, shape, START, written_behind=True).run()

    def seen(verdicts):
        return [(d.letter, d.credited, d.verdict, d.source_ok, d.match_kind) for d in verdicts.details]

    assert every_minute.letters >= 20 and every_minute.exhaustions == 0
    assert {d.match_kind for d in every_minute.details} >= {MatchKind.LIVE_LEASE, MatchKind.AFTER_HOLD}
    assert seen(fewer) == seen(every_minute) == seen(fast)
    assert fewer.requests < every_minute.requests / 2
    assert fast.requests == fewer.requests

    # The returning visitors' beats were answered from Redis: no visitor read back.
    assert behind["visitor read"] < through["visitor read"] * 0.75
    assert behind.total() < through.total()


@pytest.mark.django_db(transaction=True)
def test_the_beat_every_few_minutes_leaves_every_verdict_as_the_beat_every_minute():
    """Activity flushed and expired leases released every few virtual minutes
    (at most half the hold) instead of every minute, and the letters that
    arrive after the last request attributed in one sync: the same letters
    credited to the same visitors by the same kind of match, with addresses
    reused and the pool run dry now and then."""
    scenario = Scenario(
        days=0.1,
        visitors_per_hour=60,
        profile=(1,) * 24,
        session_median=6,
        return_share=0.3,
        return_median_hours=0.7,
        write_share=0.5,
        write_during=0.4,
        write_hours=0.4,
        write_days=0.2,
        days_later_max=1.5,
        hours_mean=0.5,
    )
    traffic = plan(scenario, seed=11)
    shape = PoolShape(size=12, hold_minutes=10)
    every_minute = Simulation(traffic, shape, START, written_behind=True)
    every_minute.beat_minutes = 1
    every = every_minute.run()
    default = Simulation(traffic, shape, START, written_behind=True)
    assert default.beat_minutes == 5
    fewer = default.run()

    def seen(verdicts):
        return [(d.letter, d.credited, d.verdict, d.source_ok, d.match_kind) for d in verdicts.details]

    assert every.letters >= 20 and every.exhaustions > 0
    assert max(letter.arrives for letter in traffic.letters) > 0.1 * 24 * 60 + 60  # letters after the last request
    assert {d.match_kind for d in every.details} >= {MatchKind.LIVE_LEASE, MatchKind.AFTER_HOLD}
    assert seen(fewer) == seen(every)
    assert (fewer.exhaustions, fewer.requests) == (every.exhaustions, every.requests)


def _counting(counter: Counter):
    def count(execute, sql, params, many, context):
        counter["visitor read" if sql.startswith('SELECT "tracker_visitor"."id"') else "other"] += 1
        return execute(sql, params, many, context)

    return count
