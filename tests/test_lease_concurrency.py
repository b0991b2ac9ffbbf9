"""Never two live leases on one address, proven on PostgreSQL with 8 processes
allocating at once (thousands of allocations). The processes start
allocating together (a barrier after Django's start-up and a first
allocation on another site), and every case checks that they really raced."""

import multiprocessing

import pytest
from django.db import connection

from substitution.models import Lease, Pool, PoolExhaustion
from tests.factories import make_setup
from tests.lease_worker import allocate_many

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PROCESSES = 8
PER_PROCESS = 250


def run_workers(setup, per_process=PER_PROCESS, first_visits=False):
    """Runs the processes; returns (allocated, refused) in all, and how many
    processes allocated at least one address."""
    assert connection.vendor == "postgresql"
    settings = connection.settings_dict
    database_url = (
        f"postgres://{settings['USER']}:{settings['PASSWORD']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    )
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start = context.Barrier(PROCESSES)
    warm = make_setup(name="Warm-up", original="info@warm.test", domains=("warm.test",), pool_size=PROCESSES)
    warm_up = (warm.pool.pk, warm.site.pk)
    workers = [
        context.Process(
            target=allocate_many,
            args=(database_url, setup.pool.pk, setup.site.pk, n, per_process, results, start, warm_up, first_visits),
        )
        for n in range(PROCESSES)
    ]
    for process in workers:
        process.start()
    reports = [results.get(timeout=300) for _ in workers]
    for process in workers:
        process.join(timeout=60)
    errors = [r[2] for r in reports if r[0] == "error"]
    assert errors == [], errors[0] if errors else ""
    return sum(r[2] for r in reports), sum(r[3] for r in reports), sum(1 for r in reports if r[2])


def assert_no_overlap(pool):
    leases = list(Lease.objects.filter(pool=pool).order_by("address_id", "started_at", "id"))
    by_address = {}
    for lease in leases:
        by_address.setdefault(lease.address_id, []).append(lease)
    for address_leases in by_address.values():
        assert sum(1 for lease in address_leases if lease.released_at is None) <= 1
        for before, after in zip(address_leases, address_leases[1:], strict=False):
            end = before.released_at or before.expires_at
            assert end <= after.started_at, f"leases {before.pk} and {after.pk} overlap on one address"
    return len(leases)


def test_eight_processes_taking_over_never_overlap_on_an_address():
    assert connection.vendor == "postgresql"
    setup = make_setup(pool_size=10, policy=Pool.ExhaustedPolicy.TAKE_OVER)
    setup.pool.max_live_leases_per_ip = 0
    setup.pool.save()
    succeeded, refused, allocating = run_workers(setup)
    total = PROCESSES * PER_PROCESS
    # With take-over every allocation gets an address; none raised.
    assert (succeeded, refused, allocating) == (total, 0, PROCESSES)
    assert assert_no_overlap(setup.pool) == total
    assert Lease.objects.filter(pool=setup.pool, released_at__isnull=True).count() == 10
    assert PoolExhaustion.objects.filter(pool=setup.pool).count() == total - 10


def test_eight_processes_on_a_small_pool_lease_each_address_once():
    setup = make_setup(pool_size=25, policy=Pool.ExhaustedPolicy.ORIGINAL)
    setup.pool.max_live_leases_per_ip = 0
    setup.pool.save()
    succeeded, refused, allocating = run_workers(setup, per_process=60)
    assert allocating > 1  # the pool was raced for, not taken by the first process alone
    assert succeeded == 25
    assert refused == PROCESSES * 60 - 25
    assert assert_no_overlap(setup.pool) == 25
    assert Lease.objects.filter(pool=setup.pool).values("address_id").distinct().count() == 25


def test_eight_processes_of_first_visits_never_overlap_on_an_address():
    """New visitors' one-statement allocation, mixed with the ORM path's
    take-over once the pool runs dry."""
    setup = make_setup(pool_size=200, policy=Pool.ExhaustedPolicy.TAKE_OVER)
    setup.pool.max_live_leases_per_ip = 0
    setup.pool.save()
    succeeded, refused, allocating = run_workers(setup, first_visits=True)
    total = PROCESSES * PER_PROCESS
    assert (succeeded, refused, allocating) == (total, 0, PROCESSES)
    assert assert_no_overlap(setup.pool) == total
    assert Lease.objects.filter(pool=setup.pool, released_at__isnull=True).count() == 200
    assert Lease.objects.filter(pool=setup.pool).values("address_id").distinct().count() == 200
    assert PoolExhaustion.objects.filter(pool=setup.pool).count() == total - 200


def test_eight_processes_of_first_visits_on_a_small_pool_lease_each_address_once():
    setup = make_setup(pool_size=25, policy=Pool.ExhaustedPolicy.ORIGINAL)
    setup.pool.max_live_leases_per_ip = 0
    setup.pool.save()
    succeeded, refused, allocating = run_workers(setup, per_process=60, first_visits=True)
    assert allocating > 1  # the pool was raced for, not taken by the first process alone
    assert (succeeded, refused) == (25, PROCESSES * 60 - 25)
    assert assert_no_overlap(setup.pool) == 25
