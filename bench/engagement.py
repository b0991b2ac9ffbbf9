"""Pixel and click throughput on the production stack, as ratios against the
bare JSON endpoint on the same server, measured in one run; then the drain.

    .venv/bin/python bench/engagement.py [--seconds 5] [--rounds 3] [--workers 3]

Starts gunicorn (config.wsgi, where engagement.wsgi answers /t/o/ and /t/c/
before Django) on PostgreSQL and Redis (a throwaway database
`emailtrack_bench_eng`, Redis db 11), makes one tracked message for 200
recipients, then drives the server with wrk (Debian package `wrk`):
  1. GET /api/v1/ping: the bare endpoint (baseline, before and after);
  2. GET /t/o/<token>.gif: the pixel of the 200 recipients in turn;
  3. GET /t/c/<token>: a link of the 200 recipients in turn (302).
Target: pixel and click each >= 0.9 of the baseline. The request path only
queues each event in a Redis stream; afterwards the stream is drained into
PostgreSQL and the stored events are counted against the requests wrk made.
"""

import argparse
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
    "DATABASE_URL": "postgres://postgres:postgres@127.0.0.1:5432/emailtrack_bench_eng",
    "REDIS_URL": "redis://127.0.0.1:6379/11",
    "SECRET_KEY": "bench-secret-key-bench-secret-key-bench-secret-key",
    "ENCRYPTION_KEY": "Zk1pQmV2b3l3b2x2T1N0b0lQeGJYc3N2c2h6d0F0d0k=",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "LOG_LEVEL": "WARNING",
    "ENGAGEMENT_BASE_URL": "http://127.0.0.1",
    # wrk replays 200 tokens thousands of times: no per-recipient cap here.
    "ENGAGEMENT_EVENTS_PER_RECIPIENT_PER_MINUTE": "100000000",
}
RECIPIENTS = 200
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"
LETTER = "<html><body><p>Offer</p><a href='https://shop.test/price'>Prices</a></body></html>"

WRK_SCRIPT = """
local paths = {}
local n = 0
init = function(args)
  for line in io.lines(args[1]) do table.insert(paths, line) end
end
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1], {["User-Agent"]=UA})
end
"""


def setup():
    import psycopg

    with psycopg.connect("postgresql://postgres:postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS emailtrack_bench_eng WITH (FORCE)")
        conn.execute("CREATE DATABASE emailtrack_bench_eng")
    os.environ.update(ENV)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from engagement import recording, services
    from engagement.models import EngagementSettings, Origin
    from projects.models import Project

    recording.redis().flushdb()
    project = Project.objects.create(name="Bench")
    EngagementSettings.objects.create(project=project, tracking_enabled=True)
    tracked = services.message_track(
        project_id=project.pk,
        origin=Origin.API,
        html=LETTER,
        recipients=[f"r{i}@client.test" for i in range(RECIPIENTS)],
    )
    strip = len(ENV["ENGAGEMENT_BASE_URL"])
    pixels = [copy.pixel_url[strip:] for copy in tracked.copies]
    clicks = [copy.links[0][1][strip:] for copy in tracked.copies]
    return pixels, clicks


def wrk(url, seconds, script=None, paths=None):
    """(requests/s, requests, non-2xx/3xx)."""
    command = ["wrk", "-t2", "-c32", f"-d{seconds}s"]
    if script:
        command += ["-s", script]
    command.append(url)
    if paths:
        command += ["--", paths]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, total, int(errors.group(1)) if errors else 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk")
    pixels, clicks = setup()
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
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/api/v1/ping", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        work = Path(tempfile.mkdtemp(prefix="emailtrack-bench-eng-"))
        (work / "pixels.txt").write_text("\n".join(pixels) + "\n")
        (work / "clicks.txt").write_text("\n".join(clicks) + "\n")
        script = work / "get.lua"
        script.write_text(WRK_SCRIPT.replace("=UA}", f'="{BROWSER}"}}'))

        wrk(base + "/api/v1/ping", 2)  # warm-up
        wrk(base, 2, str(script), str(work / "clicks.txt"))  # links looked up once per worker
        from engagement import recording
        from engagement.models import Event

        recording.redis().delete(recording.STREAM)
        Event.objects.all().delete()
        # The machine is shared: each case is compared with the baseline measured
        # just before and just after it, over several rounds.
        cases = {"pixel": str(work / "pixels.txt"), "click": str(work / "clicks.txt")}
        ratios, rates, made, errors = {k: [] for k in cases}, {k: [] for k in cases}, 0, 0
        pings = [wrk(base + "/api/v1/ping", args.seconds)[0]]
        for _round in range(args.rounds):
            for name, paths in cases.items():
                rps, count, failed = wrk(base, args.seconds, str(script), paths)
                pings.append(wrk(base + "/api/v1/ping", args.seconds)[0])
                ratios[name].append(rps / ((pings[-2] + pings[-1]) / 2))
                rates[name].append(rps)
                made += count
                errors += failed
        print(
            f"gunicorn {args.workers} workers, wrk 2 threads / 32 connections, {args.seconds} s per case, "
            f"{args.rounds} rounds, each case between two baseline runs"
        )
        print(
            f"bare JSON endpoint (baseline)  {statistics.median(pings):8.0f} req/s  (runs: "
            + ", ".join(f"{p:.0f}" for p in pings)
            + ")"
        )
        for name, label in (("pixel", "pixel GET /t/o/<token>.gif"), ("click", "click GET /t/c/<token> (302)")):
            print(
                f"{label:30s} {statistics.median(rates[name]):8.0f} req/s  = "
                f"{statistics.median(ratios[name]):.2f} x baseline (median; rounds: "
                + ", ".join(f"{r:.2f}" for r in ratios[name])
                + ")  target >= 0.9"
            )
        print(f"errors (non-2xx/3xx): {errors}")
        queued = recording.pending_count()
        started = time.monotonic()
        drained = recording.drain(consumer="bench")
        took = time.monotonic() - started
        stored = Event.objects.filter(inferred=False).count()
        print(
            f"drain: {drained} queued events stored in {took:.1f} s ({drained / max(took, 1e-9):.0f} events/s); "
            f"requests wrk counted {made}, queued {queued}, stored {stored}"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
