"""Allocation time in a 100,000-address pool against a 100-address pool,
measured in one run (target, issue 3: at most 1.5x).

    .venv/bin/python bench/allocation.py [--allocations 300]

In-process on PostgreSQL (a throwaway database `emailtrack_bench_alloc`). Each
allocation is a new visitor taking a free address (the LRU choice under a row
lock), so both pools stay far from exhaustion; the two pools are measured in
alternating rounds so machine noise falls on both.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.update(
    DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/emailtrack_bench_alloc",
    REDIS_URL="redis://127.0.0.1:6379/13",
    SECRET_KEY="bench-secret-key-bench-secret-key-bench-secret-key",
    ENCRYPTION_KEY="Zk1pQmV2b3l3b2x2T1N0b0lQeGJYc3N2c2h6d0F0d0k=",
    DJANGO_SETTINGS_MODULE="config.settings",
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--allocations", type=int, default=300)
    parser.add_argument("--large", type=int, default=100_000)
    args = parser.parse_args()
    import psycopg

    with psycopg.connect("postgresql://postgres:postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS emailtrack_bench_alloc WITH (FORCE)")
        conn.execute("CREATE DATABASE emailtrack_bench_alloc")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from substitution.models import Pool
    from substitution.services import lease_acquire, pool_fill
    from tests.factories import make_setup
    from tracker.models import Visitor

    setup = make_setup(pool_size=100)
    started = time.perf_counter()
    large = Pool.objects.create(project=setup.project, name="Large", base_email="sales@shop.test", size=args.large)
    pool_fill(large)
    print(f"filled a {args.large}-address pool in {time.perf_counter() - started:.1f} s")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    pools = {"small (100)": setup.pool, f"large ({args.large})": large}
    for pool in pools.values():
        # Each lease ends at once, so every allocation also releases the last
        # one: the steady state of a busy pool, and the small pool never runs dry.
        pool.max_live_leases_per_ip = 0
        pool.hold_minutes = 0
        pool.save()
    samples = {name: [] for name in pools}
    count = 0
    rounds = args.allocations // 10
    for _round in range(rounds):
        for name, pool in pools.items():
            for _ in range(10):
                count += 1
                now = timezone.now()
                vid = f"alloc{count:08d}"
                visitor = Visitor.objects.create(site=setup.site, vid=vid, created_at=now, last_seen_at=now)
                start = time.perf_counter()
                allocation = lease_acquire(pool=pool, visitor=visitor, now=now)
                samples[name].append(time.perf_counter() - start)
                assert allocation.email, "pool exhausted during the benchmark"
    small, big = (statistics.median(v) for v in samples.values())
    print(f"allocations per pool: {rounds * 10}")
    for name, values in samples.items():
        print(f"{name:16s} median {statistics.median(values) * 1000:.2f} ms")
    print(f"large / small = {big / small:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
