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

    .venv/bin/python bench/engagement.py --mode drain [--history 100,20000] [--rounds 7]

Drain cost against a recipient's history (no server, no wrk): two recipients
of one letter, one with 100 earlier events and one with 20,000 (opens and
clicks over the past month); each round queues 100 new events for each (opens,
clicks on several links, bursts, a hidden-link hit) in the Redis stream and
times `recording.drain` storing them. Target: the heavy recipient's drain
costs about the light one's (ratio near 1: the drain reads only the new events
and the few seconds around them, never the whole history).
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


def setup_database():
    """A fresh throwaway database, migrated; Django set up on it."""
    import psycopg

    with psycopg.connect("postgresql://postgres:postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS emailtrack_bench_eng WITH (FORCE)")
        conn.execute("CREATE DATABASE emailtrack_bench_eng")
    os.environ.update(ENV)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def setup():
    setup_database()
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
    parser.add_argument("--mode", choices=["throughput", "drain"], default="throughput")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=None, help="3 for throughput, 7 for drain")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--history", default="100,20000", help="drain: earlier events of each recipient")
    args = parser.parse_args()
    if args.mode == "drain":
        drain_against_history([int(n) for n in args.history.split(",")], args.rounds or 7)
        return
    args.rounds = args.rounds or 3
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


NEW_EVENTS = 100
APPLE_IP = "104.28.100.16"  # in the shipped Apple Private Relay list
PERSON_IP = "203.0.113.77"


def prior_events(recipient, links, count, now):
    """`count` earlier events of one recipient over the past month: mostly
    people's and Apple's opens, some clicks (one in ten a scanner's)."""
    from datetime import timedelta

    from engagement.models import Event, EventKind, Verdict

    start = now - timedelta(days=31)
    step = timedelta(days=29) / max(count, 1)
    rows = []
    for i in range(count):
        at = start + step * i
        click = i % 4 == 3
        verdict = Verdict.APPLE_MPP if i % 4 == 1 else Verdict.HUMAN
        if click:
            verdict = Verdict.SCANNER if i % 40 == 3 else Verdict.HUMAN
        rows.append(
            Event(
                message_id=recipient.message_id,
                recipient_id=recipient.pk,
                kind=EventKind.CLICK if click else EventKind.OPEN,
                verdict=verdict,
                link_id=links[i % len(links)].pk if click else None,
                at=at,
                ip_truncated="203.0.113.0",
                user_agent=BROWSER,
                method="GET",
                device_type="desktop",
            )
        )
    Event.objects.bulk_create(rows, batch_size=5000)
    recipient.open_state = "person"
    recipient.first_opened_at = start
    recipient.last_opened_at = start + step * (count - 1)
    recipient.save(update_fields=["open_state", "first_opened_at", "last_opened_at"])


def new_entries(recipient, links, start):
    """NEW_EVENTS raw events as the endpoints queue them, half a second apart:
    people's opens, Apple's opens, clicks on several links (bursts among them)
    and one hit on the hidden link."""
    from engagement import tokens

    entries = []
    for i in range(NEW_EVENTS):
        kind, link, ua, ip = tokens.OPEN, 0, BROWSER, PERSON_IP
        if i % 5 == 1:
            ua, ip = "Mozilla/5.0", APPLE_IP
        elif i % 5 in (2, 3):
            kind, link = tokens.CLICK, links[i % len(links)].pk
        elif i == NEW_EVENTS // 2:
            kind = tokens.HONEYPOT
        fields = {"k": kind, "r": recipient.pk, "l": link, "m": "GET", "u": ua, "i": ip, "t": f"{start + i * 0.5:.3f}"}
        entries.append({key: str(value) for key, value in fields.items()})
    return entries


def drain_against_history(histories, rounds):
    """Median drain time of NEW_EVENTS new events per history size, and each
    size's ratio to the smallest."""
    os.environ.update(ENV)
    setup_database()
    from django.db import connection
    from django.utils import timezone

    from engagement import recording, services
    from engagement.models import EngagementSettings, Event, Link, Origin
    from projects.models import Project

    client = recording.redis()
    client.delete(recording.STREAM)
    project = Project.objects.create(name="Bench drain")
    EngagementSettings.objects.create(project=project, tracking_enabled=True)
    letter = "<html><body>" + "".join(f"<a href='https://shop.test/p{i}'>p{i}</a>" for i in range(5)) + "</body></html>"
    tracked = services.message_track(
        project_id=project.pk,
        origin=Origin.API,
        html=letter,
        recipients=[f"h{n}@client.test" for n in histories],
    )
    links = list(Link.objects.filter(message=tracked.message).order_by("position"))
    now = timezone.now()
    recipients = [copy.recipient for copy in tracked.copies]
    for recipient, count in zip(recipients, histories, strict=True):
        prior_events(recipient, links, count, now)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE engagement_event")
    times = {n: [] for n in histories}
    clock = now.timestamp() - 86400  # the new events: a day ago onwards, after every earlier one
    for round_number in range(rounds + 1):  # the first round warms up (network lists, caches): not counted
        for recipient, count in zip(recipients, histories, strict=True):
            for fields in new_entries(recipient, links, clock):
                client.xadd(recording.STREAM, fields)
            clock += NEW_EVENTS * 0.5 + 60
            started = time.perf_counter()
            drained = recording.drain(consumer="bench")
            assert drained == NEW_EVENTS, drained
            if round_number:
                times[count].append(time.perf_counter() - started)
    base = statistics.median(times[histories[0]])
    print(f"drain of {NEW_EVENTS} new events for one recipient, {rounds} rounds after a warm-up (median)")
    for count in histories:
        median = statistics.median(times[count])
        stored = Event.objects.filter(recipient__email=f"h{count}@client.test").count()
        print(
            f"  {count:6d} earlier events: {median * 1000:7.1f} ms  = {median / base:.2f} x the {histories[0]}-event "
            f"recipient (runs: " + ", ".join(f"{t * 1000:.0f}" for t in times[count]) + f" ms; {stored} events now)"
        )


if __name__ == "__main__":
    main()
