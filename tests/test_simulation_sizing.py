"""Pool sizes from the simulator (issue 21): the command's table and curve,
the cached result per pool, and the pool page saying which recommendation
it shows."""

import csv
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from integrations.keys import api_key_create
from monitoring import checks
from monitoring.models import Kind
from simulation import pool_sizing, tasks
from simulation.advice import request_stale_simulations, simulated_size
from simulation.models import PoolSimulation
from simulation.sandbox import PoolShape, make_sandbox
from substitution import pools, selectors
from substitution.models import PoolExhaustion
from tests.factories import make_setup
from tracker.models import Session, Visitor

pytestmark = pytest.mark.django_db


def _traffic(site, sessions: int, now):
    """`sessions` sessions of new visitors over the last 7 days, all between
    10:00 and 11:00 UTC, 2 minutes each."""
    visitors = Visitor.objects.bulk_create(
        [Visitor(site=site, vid=f"learn{i:06d}", created_at=now, last_seen_at=now) for i in range(sessions)]
    )
    first = now.replace(hour=10, minute=0, second=0, microsecond=0) - timedelta(days=7)
    starts = [first + timedelta(days=i % 7, minutes=(i * 7) % 60) for i in range(sessions)]
    Session.objects.bulk_create(
        [
            Session(
                visitor=visitor,
                started_at=starts[i],
                last_seen_at=starts[i] + timedelta(minutes=2),
                channel="organic",
                source="google",
            )
            for i, visitor in enumerate(visitors)
        ]
    )


def test_the_command_prints_the_table_and_writes_the_curve(tmp_path, capsys):
    setup = make_setup(pool_size=5, hold_minutes=15)
    call_command(
        "simulate_attribution",
        "--site",
        str(setup.site.pk),
        "--days",
        "0.1",
        "--sizes",
        "1,30",
        "--seed",
        "4",
        "--out",
        str(tmp_path),
        "--no-progress",
    )
    out = capsys.readouterr().out
    assert "the default scenario is used" in out
    assert "correct visitor" in out and "exhaustions" in out
    stem = tmp_path / f"simulation-site{setup.site.pk}-pool{setup.pool.pk}"
    rows = list(csv.DictReader(stem.with_suffix(".csv").open()))
    assert [row["size"] for row in rows] == ["1", "30"]
    assert all(row["hold_minutes"] == "15" for row in rows)
    assert int(rows[0]["exhaustions"]) > 0 and int(rows[1]["exhaustions"]) == 0
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reached = [row["size"] for row in rows if float(row["visitor_accuracy"]) >= 0.995]
    if reached:
        assert f"Smallest pool size reaching 99.5%: {reached[0]}" in out
    else:
        assert "No size tried reaches 99.5%" in out


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--site", "0"], "No site with id 0"),
        (["--target", "2"], "The target is a share between 0 and 1"),
        (["--sizes", "ten"], "Sizes must be whole numbers"),
        (["--days", "0"], "Days must be more than 0"),
    ],
)
def test_the_command_refuses_bad_input_clearly(args, said, tmp_path):
    setup = make_setup()
    base = ["--site", str(setup.site.pk), "--out", str(tmp_path), "--no-progress"]
    with pytest.raises(CommandError, match=said):
        call_command("simulate_attribution", *base, *args)


def test_without_enough_traffic_the_peak_recommendation_is_used_and_said(admin_client):
    setup = make_setup(pool_size=5)
    assert pool_sizing.simulate_pool(setup.pool.pk) == PoolSimulation.Status.NOT_ENOUGH_TRAFFIC
    advice = pools.pool_recommendation(setup.pool, 7)
    assert (advice.size, advice.basis) == (7, pools.PEAK)

    page = admin_client.get(f"/admin/substitution/pool/{setup.pool.pk}/change/").content.decode()
    assert "the peak of the last 7 days with a 25% margin" in page
    assert "too little traffic in the last 7 days to simulate" in page


def test_with_enough_traffic_the_simulated_size_replaces_the_peak_on_the_pool_page(admin_client):
    setup = make_setup(pool_size=5, hold_minutes=15)
    now = timezone.now()
    _traffic(setup.site, 300, now)

    status = pool_sizing.simulate_pool(setup.pool.pk, days=1, sizes=[1, 60])

    row = PoolSimulation.objects.get(pool=setup.pool)
    assert status == row.status == PoolSimulation.Status.READY
    assert row.hold_minutes == 15 and row.visitors > 0
    assert [point["size"] for point in row.curve] == [1, 60]
    assert row.curve[0]["exhaustions"] > 0 and row.curve[1]["exhaustions"] == 0
    reached = [p["size"] for p in row.curve if p["correct_visitor"] >= 0.995 * p["letters"]]
    assert row.recommended_size == reached[0]
    advice = pools.pool_recommendation(setup.pool, 3)
    assert (advice.size, advice.basis) == (row.recommended_size, pools.SIMULATED)

    page = admin_client.get(f"/admin/substitution/pool/{setup.pool.pk}/change/").content.decode()
    assert f"Recommended size {row.recommended_size}: simulated on the sites" in page
    assert "Correct visitors against pool size" in page
    assert f"recommended size: {row.recommended_size}" in page


def _ready(pool, size: int, computed_at, hold: int = 30):
    PoolSimulation.objects.update_or_create(
        pool=pool,
        defaults={
            "status": PoolSimulation.Status.READY,
            "requested_at": computed_at,
            "computed_at": computed_at,
            "hold_minutes": hold,
            "recommended_size": size,
            "curve": [{"size": size, "letters": 10, "correct_visitor": 10}],
        },
    )


def test_pool_health_and_the_alerts_use_a_fresh_simulated_size_and_say_so():
    setup = make_setup(pool_size=2, hold_minutes=30)
    now = timezone.now()
    PoolExhaustion.objects.create(pool=setup.pool, at=now - timedelta(minutes=5), policy="original")

    health = selectors.pool_health(setup.pool, now)
    assert (health.recommended, health.basis) == (0, pools.PEAK)  # no lease yet: no peak

    _ready(setup.pool, 17, now - timedelta(hours=3))
    health = selectors.pool_health(setup.pool, now)
    assert (health.recommended, health.basis, health.too_small) == (17, pools.SIMULATED, True)
    found = checks.pools(setup.project.pk, now)
    summary, details = found[(Kind.POOL_EXHAUSTED, f"pool:{setup.pool.pk}")]
    assert "recommended size 17 (simulated on its own traffic)" in summary
    assert (details["recommended_size"], details["recommended_basis"]) == (17, pools.SIMULATED)

    # Three days old, or simulated at another hold than the pool's: the peak again.
    _ready(setup.pool, 17, now - timedelta(days=3))
    assert selectors.pool_health(setup.pool, now).basis == pools.PEAK
    _ready(setup.pool, 17, now - timedelta(hours=3), hold=15)
    health = selectors.pool_health(setup.pool, now)
    assert health.basis == pools.PEAK
    summary, details = checks.pools(setup.project.pk, now)[(Kind.POOL_EXHAUSTED, f"pool:{setup.pool.pk}")]
    assert "(the peak with a margin)" in summary and details["recommended_basis"] == pools.PEAK


def test_the_api_says_which_recommendation_it_gives(client):
    setup = make_setup(pool_size=2, hold_minutes=30)
    _row, key = api_key_create(project=setup.project, name="CRM")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}

    def health():
        return client.get(f"/api/v1/pools/{setup.pool.pk}", **headers).json()["health"]

    assert (health()["recommended"], health()["recommended_basis"]) == (0, "peak")
    _ready(setup.pool, 17, timezone.now() - timedelta(hours=3))
    assert (health()["recommended"], health()["recommended_basis"]) == (17, "simulated")


def test_reading_a_result_never_asks_for_one(django_capture_on_commit_callbacks):
    setup = make_setup()
    with django_capture_on_commit_callbacks() as callbacks:
        assert simulated_size(setup.pool) is None
        selectors.pool_health(setup.pool, timezone.now())
    assert callbacks == [] and not PoolSimulation.objects.exists()


def test_the_beat_asks_once_for_each_pool_in_use_whose_result_is_missing_or_old(
    django_capture_on_commit_callbacks, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the simulations asked for run here
    assert settings.CELERY_BEAT_SCHEDULE["simulate-stale-pools"]["task"] == tasks.simulate_stale_pools.name
    now = timezone.now()
    missing = make_setup(name="Missing")
    old = make_setup(name="Old")
    _ready(old.pool, 4, now - timedelta(days=2))
    fresh = make_setup(name="Fresh")
    _ready(fresh.pool, 4, now - timedelta(hours=2))
    rehold = make_setup(name="Rehold", hold_minutes=15)
    _ready(rehold.pool, 4, now - timedelta(hours=2), hold=30)
    unused = make_setup(name="Unused")
    unused.rule.delete()
    sandbox = make_sandbox(PoolShape(size=1))

    asked = []
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.simulate_stale_pools.apply().get() == 3
        # An hour has not passed: asking again asks for nothing.
        assert request_stale_simulations(asked.append) == []
    assert asked == []
    assert set(PoolSimulation.objects.filter(requested_at__gte=now).values_list("pool_id", flat=True)) == {
        missing.pool.pk,
        old.pool.pk,
        rehold.pool.pk,
    }
    assert not PoolSimulation.objects.filter(pool=sandbox.pool).exists()
    assert PoolSimulation.objects.get(pool=missing.pool).status == PoolSimulation.Status.NOT_ENOUGH_TRAFFIC
    # Two hours on, the old one's request went unanswered: asked for again, once.
    later = now + timedelta(hours=2)
    PoolSimulation.objects.filter(pool=old.pool).update(requested_at=now, computed_at=now - timedelta(days=2))
    with django_capture_on_commit_callbacks(execute=True):
        again = request_stale_simulations(asked.append, later)
        request_stale_simulations(asked.append, later)
    assert again == asked == [old.pool.pk]
