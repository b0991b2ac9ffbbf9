"""Collect throughput on the production stack, as ratios against a bare JSON
endpoint on the same server, measured in one run.

    .venv/bin/python bench/collect_server.py [--seconds 10] [--workers 3] [--rounds 1]

Starts gunicorn (config.wsgi) on PostgreSQL and Redis (a throwaway database
`emailtrack_bench`), then drives it with wrk (Debian package `wrk`):
  1. GET /api/v1/ping: the bare endpoint (baseline);
  2. POST /api/v1/collect for returning visitors (each has two live leases);
  3. POST /api/v1/collect for new visitors (each needs two new leases).
The site has two blocks (sales@ and support@) from two pools, so every
visit holds two leases. Targets: returning >= 0.9 of the baseline, new >= 0.3.
With --rounds N the three cases run N times in turn (the baseline again
after each round), each round's ratios against the baseline runs on either
side of it, and the medians are reported: on a shared machine a burst of
other work then spoils one round, not the figure.
wrk is the Debian package `wrk` (`make test` installs it through bin/test-services).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ENV = {
    "DATABASE_URL": "postgres://postgres:postgres@127.0.0.1:5432/emailtrack_bench",
    "REDIS_URL": "redis://127.0.0.1:6379/14",
    "SECRET_KEY": "bench-secret-key-bench-secret-key-bench-secret-key",
    "ENCRYPTION_KEY": "Zk1pQmV2b3l3b2x2T1N0b0lQeGJYc3N2c2h6d0F0d0k=",
    "COLLECT_RATE_LIMIT_PER_MINUTE": "100000000",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "LOG_LEVEL": "WARNING",
}
RETURNING = 2000
# Known bots get no lease: the load must look like browsers.
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"
NEW_POOL = 60_000

# Each request is formatted once, at start: wrk then spends on a POST what it
# spends on the baseline's GET, and the CPU it takes from the server's cores
# is the same in every case.
WRK_SCRIPT = """
local requests = {}
local n = 0
init = function(args)
  local headers = {["Content-Type"]="text/plain", ["Origin"]="https://shop.test", ["User-Agent"]="UA"}
  for line in io.lines(args[1]) do
    table.insert(requests, wrk.format("POST", "/api/v1/collect", headers, line))
  end
end
request = function()
  n = n + 1
  return requests[(n %% #requests) + 1]
end
"""


def setup_database():
    import psycopg

    with psycopg.connect("postgresql://postgres:postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS emailtrack_bench WITH (FORCE)")
        conn.execute("CREATE DATABASE emailtrack_bench")
    os.environ.update(ENV)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import redis

    redis.Redis.from_url(ENV["REDIS_URL"]).flushdb()
    from substitution.models import Block, Pool, Rule
    from substitution.services import pool_fill
    from tests.factories import make_setup

    setup = make_setup(pool_size=NEW_POOL)
    setup.pool.max_live_leases_per_ip = 0  # wrk comes from one IP
    setup.pool.save()
    # A second tracked address on the page, from its own pool.
    support = Pool.objects.create(
        project=setup.project, name="Support", base_email="support@shop.test", size=NEW_POOL, max_live_leases_per_ip=0
    )
    pool_fill(support)
    block = Block.objects.create(project=setup.project, name="Support", original_email="support@shop.test")
    rule = Rule.objects.create(project=setup.project, name="Support", pool=support, order=1)
    rule.sites.add(setup.site)
    rule.blocks.add(block)
    return setup


def vacuum_analyze():
    import psycopg

    with psycopg.connect(ENV["DATABASE_URL"].replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def body(key, vid):
    return json.dumps(
        {
            "v": 1,
            "site": key,
            "vid": vid,
            "url": "https://shop.test/catalog?utm_source=bench&utm_campaign=b",
            "ref": "",
            "consent": True,
            "hb": False,
        }
    )


SERVER = {"pid": 0}  # the gunicorn master this run started


def cpu_by_process() -> dict[int, tuple[str, int]]:
    """CPU time (clock ticks) used so far by each process, with the part of
    the stack it is: this run's gunicorn (its master and workers), the
    PostgreSQL backends of its database, Redis (a server other work on the
    machine may share); everything else, other wrk runs included, is "other"
    (this run's wrk is read apart, while it runs)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        if SERVER["pid"] and SERVER["pid"] in (int(pid), int(fields[1])):
            program = "gunicorn"
        elif name.startswith("postgres") and " emailtrack_bench " in command + " ":
            program = "postgres"
        elif name.startswith("redis"):
            program = "redis"
        else:
            program = "other"
        found[int(pid)] = (program, int(fields[11]) + int(fields[12]))
    return found


def cpu_between(before: dict, after: dict) -> dict[str, int]:
    """Ticks each part of the stack used between two readings (a process that
    ended meanwhile is left out, so no part goes below zero)."""
    ticks = {}
    for pid, (program, used) in after.items():
        earlier = before.get(pid)
        ticks[program] = ticks.get(program, 0) + used - (earlier[1] if earlier and earlier[0] == program else 0)
    return ticks


def machine_ticks() -> tuple[int, int]:
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]


def wal_position() -> int:
    """Bytes of write-ahead log the cluster has written so far."""
    import psycopg

    with psycopg.connect(ENV["DATABASE_URL"].replace("postgres://", "postgresql://"), autocommit=True) as conn:
        return int(conn.execute("SELECT pg_current_wal_lsn() - '0/0'").fetchone()[0])


def wrk(url, seconds, script=None, data=None, usage=None):
    """(requests/s, non-2xx). With `usage` (a dict), fills it with the CPU
    microseconds per request each program used, the idle share and the log
    bytes written per request (the whole cluster's: a commit waits for them)."""
    command = ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency"]
    if script:
        command += ["-s", script]
    command.append(url)
    if data:
        command += ["--", data]
    wal_before = wal_position() if usage is not None else 0
    before, machine_before = cpu_by_process(), machine_ticks()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    wrk_ticks = 0
    while process.poll() is None:  # wrk's own CPU, read while it still runs
        try:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            wrk_ticks = int(fields[11]) + int(fields[12])
        except OSError:
            pass
        time.sleep(0.2)
    out = process.stdout.read()
    after, machine_after = cpu_by_process(), machine_ticks()
    wal_after = wal_position() if usage is not None else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if usage is not None:
        requests = rps * seconds
        per_tick = 1e6 / os.sysconf("SC_CLK_TCK") / requests
        ticks = cpu_between(before, after)
        ticks["wrk"] = wrk_ticks
        usage.update({p: used * per_tick for p, used in ticks.items()})
        total, idle = (a - b for a, b in zip(machine_after, machine_before, strict=True))
        usage["idle share"] = idle / total
        usage["wal"] = (wal_after - wal_before) / requests
    return rps, int(errors.group(1)) if errors else 0


def describe(usage: dict) -> str:
    parts = [f"{p} {usage[p]:.0f}" for p in ("gunicorn", "postgres", "redis", "wrk", "other") if p in usage]
    return (
        "CPU us/request: "
        + ", ".join(parts)
        + f"; machine idle {usage['idle share']:.0%}; log {usage['wal'] / 1000:.1f} kB/request"
    )


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


WHERE = (
    "where the time goes (first baseline run, first returning and new runs; gunicorn: this run's"
    " server, postgres: its database's backends, redis: the server, shared with anything else on it;"
    " log: what the PostgreSQL cluster wrote, also shared):"
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--rounds", type=int, default=1, help="run the cases this many times in turn; medians")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk (make test installs it through bin/test-services)")
    print(f"load average at start {load_average()}")
    setup = setup_database()
    key = setup.site.site_key
    base = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "config.wsgi:application",
            "-b",
            f"127.0.0.1:{args.port}",
            "-w",
            str(args.workers),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, **ENV},
    )
    SERVER["pid"] = server.pid
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/api/v1/ping", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        work = Path(tempfile.mkdtemp(prefix="emailtrack-bench-"))
        # Returning visitors: each made once through the slow path (new lease).
        returning = work / "returning.txt"
        vids = [f"benchreturning{i:06d}" for i in range(RETURNING)]
        for vid in vids:
            request = urllib.request.Request(
                base + "/api/v1/collect",
                data=body(key, vid).encode(),
                method="POST",
                headers={"Content-Type": "text/plain", "Origin": "https://shop.test", "User-Agent": BROWSER},
            )
            assert len(json.load(urllib.request.urlopen(request))["subs"]) == 2, "not both blocks leased"
        returning.write_text("\n".join(body(key, vid) for vid in vids) + "\n")
        # Production runs autovacuum (the allocation tables' thresholds are set
        # by migration); a shared test cluster may run without it. Vacuum once
        # here, as autovacuum would have after the returning visitors' leases.
        vacuum_analyze()
        new = work / "new.txt"
        new.write_text("\n".join(body(key, None) for _ in range(100)) + "\n")
        script = work / "post.lua"
        script.write_text(WRK_SCRIPT.replace("%%", "%").replace('"UA"', json.dumps(BROWSER)))

        wrk(base + "/api/v1/ping", 2)  # warm-up
        usage = {"ping": {}, "returning": {}, "new": {}}
        pings = [wrk(base + "/api/v1/ping", args.seconds, usage=usage["ping"])[0]]
        rounds = []
        for number in range(args.rounds):
            if number:
                vacuum_analyze()  # as autovacuum would have after the last round's leases
            measured = usage if not number else {}
            ret, ret_errors = wrk(base, args.seconds, str(script), str(returning), usage=measured.get("returning"))
            fresh, fresh_errors = wrk(base, args.seconds, str(script), str(new), usage=measured.get("new"))
            pings.append(wrk(base + "/api/v1/ping", args.seconds)[0])
            baseline = (pings[-2] + pings[-1]) / 2
            rounds.append((baseline, ret, ret_errors, fresh, fresh_errors))
        print(f"gunicorn {args.workers} workers, wrk 2 threads / 32 connections, {args.seconds} s per case")
        for number, (baseline, ret, ret_errors, fresh, fresh_errors) in enumerate(rounds):
            if args.rounds > 1:
                print(f"round {number + 1}")
            print(
                f"bare JSON endpoint (baseline)        {baseline:8.0f} req/s"
                f"  (before {pings[number]:.0f}, after {pings[number + 1]:.0f})"
            )
            print(
                f"collect, returning visitor           {ret:8.0f} req/s  = {ret / baseline:.2f} x baseline"
                f"  (target >= 0.9; non-2xx: {ret_errors})"
            )
            print(
                f"collect, new visitor (two leases)    {fresh:8.0f} req/s  = {fresh / baseline:.2f} x baseline"
                f"  (target >= 0.3; non-2xx: {fresh_errors})"
            )
        if args.rounds > 1:
            returning_ratio = statistics.median(ret / baseline for baseline, ret, *_ in rounds)
            new_ratio = statistics.median(fresh / baseline for baseline, _r, _e, fresh, _f in rounds)
            print(
                f"median of {args.rounds} rounds: returning {returning_ratio:.2f} x baseline (target >= 0.9), "
                f"new {new_ratio:.2f} x baseline (target >= 0.3)"
            )
        print(f"load average at the end {load_average()}")
        print(WHERE)
        for case in ("ping", "returning", "new"):
            print(f"  {case:10s} {describe(usage[case])}")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
