"""Soak: collect at 70% of its measured capacity for ten minutes, on the
production stack, and whether anything drifts.

    .venv/bin/python bench/soak.py [--minutes 10] [--share 0.7] [--workers 3]

Starts gunicorn (config.wsgi) on PostgreSQL and Redis (a throwaway database
`emailtrack_soak`), with a site whose visitors are nine in ten returning (the
fast path) and one in 25 new (a lease from PostgreSQL; the pool is large
enough for every new visitor of the run, so it never runs dry), then:
  1. measures capacity: wrk unthrottled on that mix for 15 s;
  2. finds the pace (wrk's `delay()` per connection) that gives `--share` of
     it, in a 10-second trial;
  3. drives the same mix at that pace, one minute at a time, for `--minutes`.
Prints, per minute: requests/s reached, p50 / p99 latency, errors (non-2xx
and socket errors), and the RSS of each gunicorn worker at the start and the
end. The figures to look at: 0 errors, RSS flat (end / start), p50 and p99 of
the last minute against the first.
wrk is the Debian package `wrk` (`make test` installs it through bin/test-services).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATABASE = "emailtrack_soak"
ENV = {
    "DATABASE_URL": f"postgres://postgres:postgres@127.0.0.1:5432/{DATABASE}",
    "REDIS_URL": "redis://127.0.0.1:6379/13",
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
CONNECTIONS = 32

# Returning visitors' page views, and every NEW_EVERY-th a new visitor's;
# `delay` (ms per connection between requests) paces the run when above 0.
WRK_SCRIPT = """
local returning = {}
local fresh = ""
local pause = 0
local n = 0
init = function(args)
  for line in io.lines(args[1]) do table.insert(returning, line) end
  fresh = args[2]
  pause = tonumber(args[3])
end
delay = function() return pause end
request = function()
  n = n + 1
  local body = fresh
  if n % NEW_EVERY ~= 0 then body = returning[(n % #returning) + 1] end
  local headers = {["Content-Type"]="text/plain", ["Origin"]="https://shop.test", ["User-Agent"]=UA}
  return wrk.format("POST", "/api/v1/collect", headers, body)
end
"""


def setup_database():
    import psycopg

    with psycopg.connect("postgresql://postgres:postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    os.environ.update(ENV)
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(ENV["REDIS_URL"]).flushdb()
    from tests.factories import make_setup

    setup = make_setup(pool_size=POOL)
    setup.pool.max_live_leases_per_ip = 0  # wrk comes from one IP
    setup.pool.save()
    return setup


def body(key: str, vid: str | None, path: str = "catalog") -> str:
    return json.dumps(
        {
            "v": 1,
            "site": key,
            "vid": vid,
            "url": f"https://shop.test/{path}?utm_source=soak",
            "ref": "",
            "consent": True,
        }
        | {"hb": False}
    )


def worker_rss(master_pid: int) -> dict[int, int]:
    """RSS in MiB of each gunicorn worker (the master's children)."""
    rss = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("PPid", "0").strip()) == master_pid and "VmRSS" in fields:
            rss[int(pid)] = int(fields["VmRSS"].split()[0]) // 1024
    return rss


def milliseconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000}[unit]


def wrk(base: str, seconds: int, script: Path, returning: Path, fresh: str, pause_ms: int) -> dict:
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script), base]
    command += ["--", str(returning), fresh, str(pause_ms)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": milliseconds(latency["50"]),
        "p99": milliseconds(latency["99"]),
        "errors": (int(errors.group(1)) if errors else 0)
        + (sum(int(n) for n in socket_errors.groups()) if socket_errors else 0),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--share", type=float, default=0.7, help="of the measured capacity")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--port", type=int, default=8795)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk (make test installs it through bin/test-services)")
    setup = setup_database()
    key, base = setup.site.site_key, f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "config.wsgi:application", "-b", f"127.0.0.1:{args.port}"]
        + ["-w", str(args.workers), "--log-level", "warning"],
        cwd=ROOT,
        env={**os.environ, **ENV},
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/api/v1/ping", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        work = Path(tempfile.mkdtemp(prefix="emailtrack-soak-"))
        vids = [f"soak{i:06d}" for i in range(RETURNING)]
        for vid in vids:  # each returning visitor made once through the slow path
            request = urllib.request.Request(
                base + "/api/v1/collect",
                data=body(key, vid).encode(),
                method="POST",
                headers={"Content-Type": "text/plain", "Origin": "https://shop.test", "User-Agent": BROWSER},
            )
            assert json.load(urllib.request.urlopen(request))["subs"], "no lease for a returning visitor"
        returning = work / "returning.txt"
        returning.write_text("\n".join(body(key, vid, "prices") for vid in vids) + "\n")
        script = work / "soak.lua"
        script.write_text(f"UA = {json.dumps(BROWSER)}\nNEW_EVERY = {NEW_EVERY}\n" + WRK_SCRIPT)
        fresh = body(key, None)

        capacity = wrk(base, 15, script, returning, fresh, 0)
        target = capacity["rps"] * args.share
        # A connection sends one request every pause + latency: try a pace,
        # then correct it by the rate it gave.
        pause_ms = max(1, round(CONNECTIONS / target * 1000 - capacity["p50"]))
        trial = wrk(base, 10, script, returning, fresh, pause_ms)
        pause_ms = max(1, round(pause_ms + CONNECTIONS * 1000 * (1 / target - 1 / trial["rps"])))
        mix = f"{NEW_EVERY - 1} returning : 1 new"
        print(f"gunicorn {args.workers} workers; capacity {capacity['rps']:.0f} req/s (mix: {mix})")
        print(f"soak at {args.share:.0%}: target {target:.0f} req/s, {CONNECTIONS} connections, {pause_ms} ms apart")
        start_rss = worker_rss(server.pid)
        minutes = []
        print("minute  req/s   p50 ms   p99 ms  errors")
        for minute in range(1, args.minutes + 1):
            figures = wrk(base, 60, script, returning, fresh, pause_ms)
            minutes.append(figures)
            print(
                f"{minute:6d} {figures['rps']:6.0f} {figures['p50']:8.2f} {figures['p99']:8.2f} {figures['errors']:7d}",
                flush=True,
            )
        end_rss = worker_rss(server.pid)
        print(
            "worker RSS MiB (start -> end): " + ", ".join(f"{start_rss[p]} -> {end_rss.get(p, '-')}" for p in start_rss)
        )
        replaced = sorted(set(end_rss) - set(start_rss))
        if replaced:
            print(f"workers replaced meanwhile: {len(replaced)}")
        growth = max((end_rss[p] / start_rss[p] for p in start_rss if p in end_rss), default=float("nan"))
        first, last = minutes[0], minutes[-1]
        print(f"errors: {sum(m['errors'] for m in minutes)}")
        print(f"RSS end / start (largest): {growth:.2f}")
        print(f"p50 last / first minute: {last['p50'] / first['p50']:.2f}; p99: {last['p99'] / first['p99']:.2f}")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
