from celery import shared_task

from . import advice, pool_sizing


@shared_task
def simulate_pool(pool_id: int) -> str:
    """Simulate a pool on its sites' last week of traffic and cache the result."""
    return pool_sizing.simulate_pool(pool_id)


@shared_task
def simulate_stale_pools() -> int:
    """Beat (hourly): ask for a new simulation of each pool in use whose
    result is missing or older than a day."""
    return len(advice.request_stale_simulations(simulate_pool.delay))
