"""A separate process allocating leases, for tests/test_lease_concurrency.py.

Started with multiprocessing's "spawn", so it shares no socket with the test
process: it sets up Django itself, on the test database it is given."""

import os
import traceback


def allocate_many(
    database_url: str,
    pool_id: int,
    site_id: int,
    worker: int,
    count: int,
    results,
    start,
    warm_up: tuple[int, int],
    first_visits: bool = False,
) -> None:
    """Fresh visitors, one allocation each, with real time: through
    lease_acquire, or (`first_visits`) through the collect endpoint's service
    as a new visitor's first page view. Each process first allocates once
    from another site's pool (`warm_up`: pool and site ids), so that its
    connection, caches and prepared statements are ready, then waits at
    `start` (a barrier): all begin allocating together."""
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    try:
        import django

        django.setup()
        from django.db import connections

        allocate = _first_visits if first_visits else _allocations
        warm_pool, warm_site = warm_up
        if allocate(warm_pool, warm_site, worker, 1) != (1, 0):
            raise RuntimeError("the warm-up allocation got no address")
        start.wait(timeout=120)
        ok, refused = allocate(pool_id, site_id, worker, count)
        connections.close_all()
        results.put(("done", worker, ok, refused))
    except Exception:  # noqa: BLE001 - reported to the parent, which fails the test
        results.put(("error", worker, traceback.format_exc(), 0))


def _allocations(pool_id: int, site_id: int, worker: int, count: int) -> tuple[int, int]:
    from django.utils import timezone

    from substitution.models import Pool
    from substitution.services import lease_acquire
    from tracker.models import Visitor

    pool = Pool.objects.get(pk=pool_id)
    ok = refused = 0
    for i in range(count):
        now = timezone.now()
        vid = f"w{worker}s{site_id}v{i:05d}"
        visitor = Visitor.objects.create(site_id=site_id, vid=vid, created_at=now, last_seen_at=now)
        allocation = lease_acquire(pool=pool, visitor=visitor, now=now, ip_hash=f"ip{worker}-{i}")
        if allocation.email:
            ok += 1
        else:
            refused += 1
    return ok, refused


def _first_visits(_pool_id: int, site_id: int, worker: int, count: int) -> tuple[int, int]:
    import json

    from django.utils import timezone

    from tracker import services
    from tracker.models import Site

    site = Site.objects.prefetch_related("domains").get(pk=site_id)
    origin = f"https://{site.domains.all()[0].domain}"
    raw = json.dumps({"v": 1, "site": site.site_key, "vid": None, "url": origin + "/", "consent": True}).encode()
    ok = refused = 0
    for i in range(count):
        answer = services.collect(
            request=services.parse_request(raw),
            origin=origin,
            user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36",
            now=timezone.now(),
            ip=f"10.{worker}.{i // 250}.{i % 250}",
        )
        if answer["subs"]:
            ok += 1
        else:
            refused += 1
    return ok, refused
