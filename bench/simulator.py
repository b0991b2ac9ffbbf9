"""The attribution simulator's speed: one simulated week at 1,000 visitors an
hour through the real services on PostgreSQL (target, issue 21: at most 60 s),
and its ratio against a loop of bare allocations (`lease_acquire` for a new
visitor, nothing else) of the same count, measured in the same run.

    .venv/bin/python bench/simulator.py [--days 7] [--rate 1000] [--size 1200] [--baseline 3000]
        [--reuse-db] [--profile FILE]

In-process on PostgreSQL (a throwaway database `emailtrack_bench_sim`) and
Redis (REDIS_URL, default database 10): returning visitors' requests take
collect's fast path, as in production. The baseline times `--baseline`
allocations, each committed on its own as the simulation's requests are (one
transaction around all of them would make the loop quadratic: see
simulation/runner.py), and scales them to the simulation's number of requests (a loop
of all of them would take as long as the thing measured); its per-allocation
time is printed too, and where the simulation's time went: by part of the
run, and the SQL statements by verb and first table named (count and time).

Autovacuum: production's PostgreSQL runs it, this machine's may not
(autovacuum=off here). Addresses, leases, visitors and sessions are updated
all the time and their dead row versions would pile up, so the bench stands
in for it: every `--vacuum-minutes` virtual minutes (default 30; 0: never)
it runs VACUUM on those tables of its own throwaway database, from a
connection of its own, and ANALYZE on those that changed enough (autovacuum's
own rule: 50 rows and 10%), and prints that it did and the time it took. The
simulation itself never vacuums: in production its tables are everyone's.
"""

import argparse
import cProfile
import os
import re
import resource
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.update(
    DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/emailtrack_bench_sim",
    REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/10"),
    SECRET_KEY="bench-secret-key-bench-secret-key-bench-secret-key",
    ENCRYPTION_KEY="Zk1pQmV2b3l3b2x2T1N0b0lQeGJYc3N2c2h6d0F0d0k=",
    DJANGO_SETTINGS_MODULE="config.settings",
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--rate", type=float, default=1000, help="new visitors per hour")
    # At 1,000 new visitors an hour the busiest hour brings 1,600, about 900
    # of them holding an address at once (visit plus a 30-minute hold): a
    # pool of 1,200 rarely runs dry, as a pool sized by the simulation would.
    # (400, the earlier default, ran dry for most visitors: 23% correct.)
    parser.add_argument("--size", type=int, default=1200)
    parser.add_argument("--hold", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--baseline", type=int, default=3000)
    parser.add_argument("--reuse-db", action="store_true", help="keep the database of an earlier run (migrated)")
    parser.add_argument("--profile", help="write a cProfile of the simulation to this file")
    parser.add_argument(
        "--vacuum-minutes",
        type=float,
        default=30,
        help="VACUUM the hot tables every this many virtual minutes, as autovacuum would (0: never)",
    )
    args = parser.parse_args()
    with psycopg.connect("postgresql://postgres:postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'emailtrack_bench_sim'").fetchone()
        if not (args.reuse_db and exists):
            conn.execute("DROP DATABASE IF EXISTS emailtrack_bench_sim WITH (FORCE)")
            conn.execute("CREATE DATABASE emailtrack_bench_sim")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test.utils import override_settings
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from simulation.runner import Simulation, commits_without_waiting
    from simulation.sandbox import PoolShape, make_sandbox, remove_sandbox
    from simulation.scenario import Scenario, plan
    from substitution.services import lease_acquire
    from tracker.models import Visitor

    started = time.perf_counter()
    traffic = plan(Scenario(days=args.days, visitors_per_hour=args.rate), args.seed)
    planned = time.perf_counter() - started
    print(
        f"plan: {len(traffic.visits)} visitors, {traffic.visit_count} visits, "
        f"{len(traffic.letters)} letters in {planned:.1f} s"
    )
    shape = PoolShape(size=args.size, hold_minutes=args.hold)
    vacuum = _Autovacuum(args.vacuum_minutes)
    simulation = Simulation(
        traffic, shape, start=timezone.now().replace(microsecond=0) - timezone.timedelta(days=8), on_minute=vacuum
    )
    queries = [0]
    kinds: dict[str, tuple[int, float]] = {}

    def count(execute, sql, params, many, context):
        queries[0] += 1
        kind = _statement_kind(sql)
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            n, seconds = kinds.get(kind, (0, 0.0))
            kinds[kind] = (n + 1, seconds + time.perf_counter() - started)

    with connection.execute_wrapper(count):
        if args.profile:
            profiler = cProfile.Profile()
            verdicts = profiler.runcall(simulation.run)
            profiler.dump_stats(args.profile)
        else:
            verdicts = simulation.run()
    total = planned + verdicts.seconds
    parts = ", ".join(f"{part} {seconds:.1f} s" for part, seconds in getattr(simulation, "timings", {}).items())
    print(
        f"simulation: {verdicts.requests} requests, {verdicts.letters} letters, "
        f"{verdicts.visitor_accuracy:.2%} correct visitors, {verdicts.exhaustions} exhaustions "
        f"in {verdicts.seconds:.1f} s (with the plan {total:.1f} s); "
        f"{queries[0]} SQL statements, {queries[0] / max(verdicts.requests, 1):.1f} a request"
    )
    print(f"where the time went: {parts}")
    top = sorted(kinds.items(), key=lambda item: -item[1][1])[:14]
    print("statements by kind (count, seconds): " + "; ".join(f"{kind} {n} {t:.1f} s" for kind, (n, t) in top))
    print(vacuum.summary())

    # The baseline: bare allocations (a new visitor takes a free address),
    # each committed on its own with synchronous_commit off and without
    # Redis, as the simulation's requests run; after the run's dead rows were
    # vacuumed and the new pool analyzed, as autovacuum would have. Its rows
    # are deleted after.
    with override_settings(REDIS_URL=""):
        with transaction.atomic():
            sandbox = make_sandbox(PoolShape(size=args.baseline, hold_minutes=30, max_live_leases_per_ip=0))
            now = timezone.now()
            visitors = Visitor.objects.bulk_create(
                [
                    Visitor(site=sandbox.site, vid=f"base{i:08d}", created_at=now, last_seen_at=now)
                    for i in range(args.baseline)
                ]
            )
        if args.vacuum_minutes:
            vacuum.vacuum()
        kinds.clear()
        try:
            with commits_without_waiting(), connection.execute_wrapper(count):
                started = time.perf_counter()
                for visitor in visitors:
                    leased = lease_acquire(pool=sandbox.pool, visitor=visitor.pk, now=now)
                    assert leased.lease is not None
                each = (time.perf_counter() - started) / args.baseline
        finally:
            remove_sandbox(sandbox)
    baseline = each * verdicts.requests
    top = sorted(kinds.items(), key=lambda item: -item[1][1])[:6]
    print("its statements by kind (count, seconds): " + "; ".join(f"{kind} {n} {t:.2f} s" for kind, (n, t) in top))
    print(f"bare allocation: {each * 1000:.2f} ms each; x {verdicts.requests} requests = {baseline:.1f} s")
    print(f"ratio simulation / bare allocations: {verdicts.seconds / baseline:.2f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {peak:.0f} MB")


def _statement_kind(sql: str) -> str:
    """A statement's verb and the first table it reads or writes (for the tally)."""
    verb = sql.split(None, 1)[0].upper() if sql.strip() else ""
    if verb == "WITH":
        if "new_visitor" in sql:
            return "WITH (first visit)"
        for marker, name in _LEASING:
            if sql.lstrip().startswith(marker):
                return name
        return "WITH " + (_TABLE.findall(sql) or [""])[0]
    tables = _TABLE.findall(sql)
    return f"{verb} {tables[0] if tables else ''}".strip()


# substitution.leasing's statements, told apart by their first common table expression.
_LEASING = (
    ("WITH current AS", "WITH (lease: settle the visitor's own)"),
    ("WITH previous AS", "WITH (lease: allocate)"),
    ("WITH expired AS", "WITH (lease: release expired)"),
)
_TABLE = re.compile(r'(?:FROM|UPDATE|INTO)\s+"?(\w+)')


# The tables whose rows every request or beat updates (see the docstring).
HOT_TABLES = ("substitution_address", "substitution_lease", "tracker_visitor", "tracker_session")


# Autovacuum's own rule for ANALYZE (autovacuum_analyze_threshold and
# autovacuum_analyze_scale_factor, PostgreSQL's defaults): a table is analyzed
# once more rows changed since its last ANALYZE than this many plus this share.
_ANALYZE_THRESHOLD = 50
_ANALYZE_SCALE = 0.1


class _Autovacuum:
    """The bench's stand-in for PostgreSQL's autovacuum: VACUUM of the hot
    tables of the bench's own database every `minutes` virtual minutes, on
    its own connection (as autovacuum's worker is a backend of its own), and
    ANALYZE of those that changed enough by autovacuum's own rule. Without
    the statistics autovacuum keeps, the planner guesses: the leasing
    statements then scanned every live lease of the pool, or every lease the
    pool ever had, to find one visitor's (about 1 ms each after two virtual
    days, growing; 0.1-0.3 ms with statistics)."""

    def __init__(self, minutes: float):
        self.minutes = minutes
        self.last = 0
        self.runs = 0
        self.analyzed = 0
        self.seconds = 0.0
        self.connection = None

    def __call__(self, minute: int) -> None:
        if not self.minutes or minute - self.last < self.minutes:
            return
        self.last = minute
        self.vacuum()

    def vacuum(self) -> None:
        started = time.perf_counter()
        if self.connection is None:
            self.connection = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
        self.connection.execute(f"VACUUM {', '.join(HOT_TABLES)}")
        changed = self.connection.execute(
            "SELECT stat.relname FROM pg_stat_user_tables stat JOIN pg_class ON pg_class.oid = stat.relid "
            "WHERE stat.relname = ANY(%s) AND n_mod_since_analyze > %s + %s * greatest(reltuples, 0)",
            (list(HOT_TABLES), _ANALYZE_THRESHOLD, _ANALYZE_SCALE),
        ).fetchall()
        if changed:
            self.connection.execute(f"ANALYZE {', '.join(name for (name,) in changed)}")
            self.analyzed += len(changed)
        self.runs += 1
        self.seconds += time.perf_counter() - started

    def summary(self) -> str:
        if not self.minutes:
            return "autovacuum stand-in: off (--vacuum-minutes 0)"
        return (
            f"autovacuum stand-in (this machine's PostgreSQL runs without autovacuum, production's with it): "
            f"VACUUM {', '.join(HOT_TABLES)} every {self.minutes:g} virtual minutes, "
            f"{self.runs} times, and ANALYZE of a table {self.analyzed} times (when 10% of its rows changed), "
            f"{self.seconds:.1f} s in all (counted in the simulation's time, as 'on_minute')"
        )


if __name__ == "__main__":
    main()
