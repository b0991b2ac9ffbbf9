"""Eight processes of new visitors on a page with two blocks from two pools:
every visit holds two leases, and no address is ever held twice."""

import pytest

from substitution.models import Block, Lease, Pool, PoolExhaustion, Rule
from substitution.services import pool_fill
from tests.factories import make_setup
from tests.test_lease_concurrency import PER_PROCESS, PROCESSES, assert_no_overlap, run_workers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_eight_processes_of_two_block_first_visits_never_hold_an_address_twice():
    setup = make_setup(pool_size=150, policy=Pool.ExhaustedPolicy.TAKE_OVER)
    support = Pool.objects.create(
        project=setup.project,
        name="Support",
        base_email="support@shop.test",
        size=100,
        exhausted_policy=Pool.ExhaustedPolicy.TAKE_OVER,
    )
    pool_fill(support)
    block = Block.objects.create(project=setup.project, name="Support", original_email="support@shop.test")
    rule = Rule.objects.create(project=setup.project, name="Support", pool=support, order=1)
    rule.sites.add(setup.site)
    rule.blocks.add(block)
    Pool.objects.filter(pk__in=[setup.pool.pk, support.pk]).update(max_live_leases_per_ip=0)

    succeeded, refused, allocating = run_workers(setup, first_visits=True)
    total = PROCESSES * PER_PROCESS
    assert (succeeded, refused, allocating) == (total, 0, PROCESSES)
    for pool, size in ((setup.pool, 150), (support, 100)):
        assert assert_no_overlap(pool) == total  # each visit leased from both pools
        assert Lease.objects.filter(pool=pool, released_at__isnull=True).count() == size
        assert PoolExhaustion.objects.filter(pool=pool).count() == total - size
    assert set(Lease.objects.filter(pool=support).values_list("block_id", flat=True)) == {block.pk}
    # Every visitor holds one live lease in each pool at most.
    live = Lease.objects.filter(released_at__isnull=True).values_list("visitor_id", "pool_id")
    assert len(list(live)) == len(set(live))
