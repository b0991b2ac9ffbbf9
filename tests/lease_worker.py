"""A separate process allocating leases, for tests/test_lease_concurrency.py.

Started with multiprocessing's "spawn", so it shares no socket with the test
process: it sets up Django itself, on the test database it is given."""

import os
import traceback


def allocate_many(database_url: str, pool_id: int, site_id: int, worker: int, count: int, results) -> None:
    """Fresh visitors, one allocation each, with real time."""
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    ok = refused = 0
    try:
        import django

        django.setup()
        from django.db import connections
        from django.utils import timezone

        from substitution.models import Pool
        from substitution.services import lease_acquire
        from tracker.models import Visitor

        pool = Pool.objects.get(pk=pool_id)
        for i in range(count):
            now = timezone.now()
            vid = f"w{worker}v{i:05d}"
            visitor = Visitor.objects.create(site_id=site_id, vid=vid, created_at=now, last_seen_at=now)
            allocation = lease_acquire(pool=pool, visitor=visitor, now=now, ip_hash=f"ip{worker}-{i}")
            if allocation.email:
                ok += 1
            else:
                refused += 1
        connections.close_all()
        results.put(("done", worker, ok, refused))
    except Exception:  # noqa: BLE001 - reported to the parent, which fails the test
        results.put(("error", worker, traceback.format_exc(), 0))
