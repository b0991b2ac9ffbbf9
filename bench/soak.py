"""Soak: collect at 70% of its measured capacity for ten minutes, on the
production stack as a deployment runs it, and whether anything drifts.

    .venv/bin/python bench/soak.py [--minutes 10] [--share 0.7] [--workers 3]
        [--autovacuum on|off] [--no-tasks]

Starts its own stack (bench/stack.py): a throwaway PostgreSQL cluster with
PostgreSQL's defaults (autovacuum on), its own Redis, gunicorn behind nginx
(the reverse proxy a deployment has: wrk keeps its connections to it open, so
a paced connection waiting for its next slot holds no gunicorn worker), and a Celery
worker with Celery beat (the activity flush every 30 s, the release of
expired leases and the fold of the report days' queued sessions every
minute...), as docker-compose does. The site's visitors are 24 in 25
returning (the fast path) and one in 25 new (a lease from PostgreSQL; the
pool is large enough for every new visitor of the run, so it never runs dry).
  1. capacity: wrk unthrottled on that mix for 15 s;
  2. the soak: the same mix at `--share` of it, one minute at a time, for
     `--minutes`. The pace is exact: each wrk thread sends its requests on a
     fixed schedule (a wall clock read through LuaJIT's FFI), catching up at
     most a second it fell behind.
Prints, per minute: requests/s delivered against the target, p50 / p99 /
max latency, errors (non-2xx, socket errors and requests slower than
10 s), the largest gunicorn worker's RSS, how often a PostgreSQL session
waited for a lock (sampled every 50 ms) and the longest wait; then what might drift
under it: the CPU each part of the stack spent per request and what the rest
of the machine used (other work on a shared machine), the allocation's scan
(buffers the free-address index scan reads), dead rows and autovacuum runs,
checkpoints, rows, Redis keys and the activity waiting for its flush.
At the end: each worker's RSS at the start and the end, 0 errors, p50 /
p99 of the last third of the minutes against the first, and the statements
that waited for a lock most, with what held it. The machine's other work shows in "others' cores":
compare minutes at similar values, and the CPU per request, which contention
changes far less than latency.

--autovacuum off and --no-tasks take out what a deployment has (a server
without autovacuum; no worker and beat), to compare in the same conditions.
wrk is the Debian package `wrk` (`make test` installs it through bin/test-services),
nginx the package `nginx-light`; PostgreSQL's server binaries come with `postgresql`.
"""

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import stack

ROOT = stack.ROOT
sys.path.insert(0, str(ROOT))
DATABASE = "emailtrack_soak"
ENV = {
    "SECRET_KEY": "soak-secret-key-soak-secret-key-soak-secret-key-soak",
    "ENCRYPTION_KEY": "Zk1pQmV2b3l3b2x2T1N0b0lQeGJYc3N2c2h6d0F0d0k=",
    "COLLECT_RATE_LIMIT_PER_MINUTE": "100000000",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "LOG_LEVEL": "WARNING",
}
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"
RETURNING = 2000
NEW_EVERY = 25
POOL = 80_000
CONNECTIONS = 32  # wrk's (two threads), kept open to the proxy
CATCH_UP_MS = 1000
# A request slower than this (seconds) is a "timeout" error for wrk, and left
# out of its latency figures.
TIMEOUT = 10

# wrk's script. Arguments: a file of bodies (one a line), the new visitor's
# body, every how many requests it is sent (0: never), requests per second of
# each thread (0: as fast as it goes). done() prints the summary and the
# latency percentiles (microseconds) for the bench to read. (Only a few:
# each of wrk's percentile and histogram reads walks every microsecond up to
# the slowest request.)
WRK_SCRIPT = """
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_usec; } soak_timeval; int gettimeofday(soak_timeval *tv, void *tz); ]]
local tv = ffi.new("soak_timeval")
local function clock_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end
local bodies, fresh, every, interval = {}, "", 0, 0
local n, due = 0, nil
local headers = {["Content-Type"]="text/plain", ["Origin"]="https://shop.test", ["User-Agent"]=UA}
init = function(args)
  for line in io.lines(args[1]) do table.insert(bodies, line) end
  fresh = args[2]
  every = tonumber(args[3])
  local rate = tonumber(args[4])
  if rate > 0 then interval = 1000 / rate end
end
-- Each request has its slot on the thread's schedule; a connection free
-- early waits for the next slot, one late takes it at once (at most
-- CATCH_UP_MS behind: a stall is not made up as a burst).
delay = function()
  if interval == 0 then return 0 end
  local now = clock_ms()
  if due == nil then due = now + math.random() * interval end
  if due < now - CATCH_UP_MS then due = now - CATCH_UP_MS end
  local wait = due - now
  due = due + interval
  if wait <= 0 then return 0 end
  return math.floor(wait + 0.5)
end
request = function()
  n = n + 1
  local body = bodies[(n % #bodies) + 1]
  if every > 0 and n % every == 0 then body = fresh end
  return wrk.format("POST", "/api/v1/collect", headers, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("SUMMARY %d %d %d %d %d %d %d\\n", summary.requests, summary.duration, e.status,
    e.connect, e.read, e.write, e.timeout))
  for _, share in ipairs({50, 99}) do
    io.write(string.format("P %g %d\\n", share, latency:percentile(share)))
  end
  io.write(string.format("P 100 %d\\n", latency.max))
end
"""


def setup_database():
    os.environ.update(ENV)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from tests.factories import make_setup

    setup = make_setup(pool_size=POOL)
    setup.pool.max_live_leases_per_ip = 0  # wrk comes from one IP
    setup.pool.save()
    setup.mailbox.active = False  # the soak is collect's: no sync tries the factory's server
    setup.mailbox.save()
    return setup


def body(key: str, vid: str | None, path: str = "catalog") -> str:
    return json.dumps(
        {"v": 1, "site": key, "vid": vid, "url": f"https://shop.test/{path}?utm_source=soak", "ref": ""}
        | {"consent": True, "hb": False}
    )


def wrk(base, seconds, script, bodies, fresh, every, rate, threads=2, connections=CONNECTIONS) -> dict:
    """One wrk run: requests, seconds, errors by kind and latency percentiles
    (ms). `rate`: requests per second in all (0: unthrottled)."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={TIMEOUT}s"]
    command += ["-s", str(script), base, "--", str(bodies), fresh, str(every), repr(rate / threads)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    percentiles, summary = {}, None
    for line in out.splitlines():
        if line.startswith("P "):
            _, share, value = line.split()
            percentiles[float(share)] = int(value) / 1000
        elif line.startswith("SUMMARY "):
            summary = [int(field) for field in line.split()[1:]]
    requests, duration_us, *errors = summary
    return {
        "requests": requests,
        "rps": requests / (duration_us / 1e6),
        "p50": percentiles[50.0],
        "p99": percentiles[99.0],
        "max": percentiles[100.0],
        "errors": sum(errors),
        "kinds": {k: v for k, v in zip(("status", "connect", "read", "write", "timeout"), errors, strict=True) if v},
    }


TABLES = ("substitution_address", "substitution_lease", "tracker_session", "tracker_visitor", "costs_sessiondelta")
# The allocation's scan of the free-address index (substitution.first_visit's candidate).
CANDIDATE = (
    "SELECT id FROM substitution_address WHERE pool_id = %s AND active AND NOT held "
    "ORDER BY last_released_at ASC NULLS FIRST, id LIMIT 1 FOR UPDATE SKIP LOCKED"
)


def database_state(conn, pool_id: int) -> dict:
    """What might grow under collect: the allocation scan's buffers and time,
    dead rows, autovacuum runs, checkpoints, rows."""
    (plan,) = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + CANDIDATE, (pool_id,)).fetchone()[0]
    node = plan["Plan"]
    rows = conn.execute(
        "SELECT relname, n_live_tup, n_dead_tup, autovacuum_count + vacuum_count FROM pg_stat_user_tables "
        "WHERE relname = ANY(%s)",
        (list(TABLES),),
    ).fetchall()
    tables = {name: (live, dead, vacuums) for name, live, dead, vacuums in rows}
    checkpoints = conn.execute("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter").fetchone()[0]
    return {
        "scan_buffers": node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0),
        "scan_ms": plan["Execution Time"],
        "address_dead": tables["substitution_address"][1],
        "vacuums": sum(vacuums for _, _, vacuums in tables.values()),
        "checkpoints": checkpoints,
        "sessions": tables["tracker_session"][0],
        "deltas": tables["costs_sessiondelta"][0],
    }


def redis_state(client) -> dict:
    from substitution import activity

    info = client.info("memory")
    return {
        "keys": client.dbsize(),
        "redis_mib": info["used_memory"] / 2**20,
        "pending": client.hlen(activity.PENDING_SESSIONS),
    }


class LockWaits:
    """Samples PostgreSQL's sessions every 50 ms in a thread of its own:
    how often one waited for a lock, the longest wait seen, and which
    statement waited on which (what stalls collect while a worker waits)."""

    SAMPLE = (
        "SELECT w.query, b.query, extract(epoch FROM now() - w.query_start) FROM pg_stat_activity w"
        " CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS blocker(pid)"
        " JOIN pg_stat_activity b ON b.pid = blocker.pid WHERE w.wait_event_type = 'Lock'"
    )

    def __init__(self, url: str):
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.blockers = collections.Counter()
        self.running = False
        self.thread = None

    def start(self) -> None:
        self.samples = self.waiting = 0
        self.longest = 0.0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            rows = self.conn.execute(self.SAMPLE).fetchall()
            self.samples += 1
            if rows:
                self.waiting += 1
                self.longest = max(self.longest, *(float(row[2]) for row in rows))
                for waiting, blocking, _ in rows:
                    self.blockers[(" ".join(waiting.split())[:90], " ".join(blocking.split())[:90])] += 1
            time.sleep(0.05)

    def take(self) -> dict:
        self.stop()
        return {"share": self.waiting / max(1, self.samples), "longest_ms": self.longest * 1000}

    def stop(self) -> None:
        self.running = False
        if self.thread is not None:
            self.thread.join()


def worker_rss(master_pid: int) -> dict[int, int]:
    return {pid: stack.rss_mib(pid) or 0 for pid in stack.children(master_pid)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--share", type=float, default=0.7, help="of the measured capacity")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--autovacuum", choices=("on", "off"), default="on")
    parser.add_argument("--no-tasks", action="store_true", help="no Celery worker and beat")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk (make test installs it through bin/test-services)")
    work = Path(tempfile.mkdtemp(prefix="emailtrack-soak-"))
    postgres = stack.Postgres(DATABASE, {"autovacuum": args.autovacuum})
    redis_server = stack.Redis()
    processes, proxy = [], None
    try:
        postgres.start()
        redis_server.start()
        ENV.update({"DATABASE_URL": postgres.url, "REDIS_URL": redis_server.url, "VAR_DIR": str(work / "var")})
        setup = setup_database()
        env = {**os.environ, **ENV}
        port = stack.free_port()
        server = stack.gunicorn(env, port, args.workers)
        processes.append(server)
        proxy = stack.Proxy(port).start()
        if not args.no_tasks:
            processes += stack.celery(env)
        soak(args, setup, server, postgres, redis_server, proxy, processes, work)
    finally:
        if proxy is not None:
            proxy.stop()
        for process in reversed(processes):
            stack.stop(process)
        redis_server.stop()
        postgres.stop()
        shutil.rmtree(work, ignore_errors=True)


def returning_visitors(base: str, key: str) -> list[str]:
    """Each returning visitor made once through the slow path (a lease)."""
    import urllib.request

    vids = [f"soak{i:06d}" for i in range(RETURNING)]
    for vid in vids:
        request = urllib.request.Request(
            base + "/api/v1/collect",
            data=body(key, vid).encode(),
            method="POST",
            headers={"Content-Type": "text/plain", "Origin": "https://shop.test", "User-Agent": BROWSER},
        )
        assert json.load(urllib.request.urlopen(request))["subs"], "no lease for a returning visitor"
    return vids


def soak(args, setup, server, postgres, redis_server, proxy, processes, work):
    import psycopg
    import redis

    base, key = proxy.url, setup.site.site_key
    vids = returning_visitors(base, key)
    returning = work / "returning.txt"
    returning.write_text("\n".join(body(key, vid, "prices") for vid in vids) + "\n")
    fresh = body(key, None)
    script = work / "soak.lua"
    script.write_text(f"UA = {json.dumps(BROWSER)}\nCATCH_UP_MS = {CATCH_UP_MS}\n" + WRK_SCRIPT)

    capacity = wrk(base, 15, script, returning, fresh, NEW_EVERY, 0)
    capacity_rps = capacity["rps"]
    target = capacity_rps * args.share
    tasks = "no worker or beat" if args.no_tasks else "Celery worker and beat"
    print(f"gunicorn {args.workers} workers, {tasks}, autovacuum {args.autovacuum}")
    print(f"capacity {capacity_rps:.0f} req/s (mix: {NEW_EVERY - 1} returning : 1 new; errors {capacity['errors']})")
    print(f"soak at {args.share:.0%}: target {target:.0f} req/s", flush=True)

    conn = psycopg.connect(postgres.url.replace("postgres://", "postgresql://"), autocommit=True)
    client = redis.Redis.from_url(redis_server.url)
    parts = {
        "gunicorn": [server.pid],
        "proxy": [proxy.process.pid],
        "postgres": [postgres.postmaster_pid()],
        "redis": [redis_server.process.pid],
        "celery": [process.pid for process in processes[1:]],
    }
    start_rss = worker_rss(server.pid)
    usage = stack.Usage(parts)
    locks = LockWaits(postgres.url.replace("postgres://", "postgresql://"))
    minutes, details = [], []
    print("minute  delivered / target req/s   p50 ms   p99 ms   max ms  errors  max RSS MiB  lock waits  longest ms")
    for minute in range(1, args.minutes + 1):
        locks.start()
        figures = wrk(base, 60, script, returning, fresh, NEW_EVERY, target)
        waits = locks.take()
        used = usage.take()
        state = database_state(conn, setup.pool.pk) | redis_state(client)
        state["cpu"] = {part: seconds * 1000 / figures["requests"] for part, seconds in used.items()}
        state["others"] = used["others"] / 60
        state["idle"] = used["idle share"]
        rss = max(worker_rss(server.pid).values(), default=0)
        minutes.append(figures)
        details.append(state)
        print(
            f"{minute:6d} {figures['rps']:9.0f} / {target:.0f} ({figures['rps'] / target:6.1%})"
            f" {figures['p50']:8.2f} {figures['p99']:8.2f} {figures['max']:8.1f} {figures['errors']:7d} {rss:12d}"
            f" {waits['share']:11.1%} {waits['longest_ms']:11.0f}",
            flush=True,
        )
    end_rss = worker_rss(server.pid)
    locks.stop()
    report_details(details)
    report_end(minutes, start_rss, end_rss)
    if locks.blockers:
        print("lock waits seen most (samples): the waiting statement, and the blocking session's current one")
        for (waiting, blocking), count in locks.blockers.most_common(3):
            print(f"  {count:5d}  {waiting!r}\n         waited on {blocking!r}")


def report_details(details: list[dict]) -> None:
    print("\nwhat might drift, per minute:")
    print(
        "minute  CPU ms/request: gunicorn postgres redis celery proxy wrk | others' cores  idle"
        " | alloc scan: buffers ms | address dead  vacuums  checkpoints"
        " | sessions  queued deltas | Redis keys  MiB  pending sessions"
    )
    for minute, d in enumerate(details, 1):
        cpu = d["cpu"]
        print(
            f"{minute:6d}  {cpu['gunicorn']:23.3f} {cpu['postgres']:8.3f} {cpu['redis']:5.3f} {cpu['celery']:6.3f}"
            f" {cpu['proxy']:5.3f} {cpu['load generator']:5.3f} | {d['others']:13.2f} {d['idle']:5.0%}"
            f" | {d['scan_buffers']:18d} {d['scan_ms']:5.2f}"
            f" | {d['address_dead']:12d} {d['vacuums']:8d} {d['checkpoints']:12d}"
            f" | {d['sessions']:8d} {d['deltas']:14d} | {d['keys']:10d} {d['redis_mib']:4.0f} {d['pending']:16d}"
        )


def report_end(minutes: list[dict], start_rss: dict, end_rss: dict) -> None:
    print(
        "\nworker RSS MiB (start -> end): " + ", ".join(f"{start_rss[p]} -> {end_rss.get(p, '-')}" for p in start_rss)
    )
    replaced = sorted(set(end_rss) - set(start_rss))
    if replaced:
        print(f"workers replaced meanwhile: {len(replaced)}")
    growth = max((end_rss[p] / start_rss[p] for p in start_rss if p in end_rss), default=float("nan"))
    print(f"errors: {sum(m['errors'] for m in minutes)}")
    for minute, m in enumerate(minutes, 1):
        if m["errors"]:
            print(f"  minute {minute}: {m['kinds']}")
    print(f"RSS end / start (largest): {growth:.2f}")
    delivered = [m["rps"] for m in minutes]
    print(f"delivered req/s: min {min(delivered):.0f}, max {max(delivered):.0f}")
    third = max(1, len(minutes) // 3)
    first, last = minutes[:third], minutes[-third:]
    for name in ("p50", "p99"):
        early, late = statistics.median(m[name] for m in first), statistics.median(m[name] for m in last)
        print(f"{name}: median of the first {third} minutes {early:.2f} ms, of the last {third} {late:.2f} ms", end="")
        print(f": {late / early:.2f}")


if __name__ == "__main__":
    main()
