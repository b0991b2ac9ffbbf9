from celery import shared_task

from . import pool_sizing


@shared_task
def simulate_pool(pool_id: int) -> str:
    """Simulate a pool on its sites' last week of traffic and cache the result."""
    return pool_sizing.simulate_pool(pool_id)
