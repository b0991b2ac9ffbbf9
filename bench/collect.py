"""Collect endpoint cost, as ratios against a baseline measured in the same run.

    .venv/bin/python bench/collect.py [--requests 400]

Runs in-process through Django's test client against PostgreSQL and Redis
(a throwaway database `emailtrack_bench`, recreated each run). The baseline is
GET /s/<key>.js (one site lookup, one block query, a render), so the ratios say
what a page view costs on top of serving the snippet. Machine noise cancels
out; absolute times are printed only for context.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/emailtrack_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("SECRET_KEY", "bench-secret-key-bench-secret-key-bench-secret-key")
os.environ.setdefault("ENCRYPTION_KEY", "Zk1pQmV2b3l3b2x2T1N0b0lQeGJYc3N2c2h6d0F0d0k=")
os.environ.setdefault("COLLECT_RATE_LIMIT_PER_MINUTE", "100000000")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"


def recreate_database():
    import psycopg

    with psycopg.connect("postgresql://postgres:postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS emailtrack_bench WITH (FORCE)")
        conn.execute("CREATE DATABASE emailtrack_bench")


def timed(fn, n):
    samples = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    recreate_database()

    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    from tests.factories import make_setup

    setup = make_setup(pool_size=args.requests + 10)
    client = Client()
    key = setup.site.site_key

    def body(vid, hb=False):
        return json.dumps(
            {
                "v": 1,
                "site": key,
                "vid": vid,
                "url": "https://shop.test/?utm_source=bench&utm_campaign=b",
                "ref": "",
                "consent": True,
                "hb": hb,
            }
        )

    def post(data):
        response = client.post("/api/v1/collect", data, content_type="text/plain", HTTP_ORIGIN="https://shop.test")
        assert response.status_code == 200, response.content
        return response

    def baseline(_):
        assert client.get(f"/s/{key}.js").status_code == 200

    vids = [f"benchvisitor{i:06d}" for i in range(args.requests)]

    def first_view(i):
        post(body(vids[i]))

    def returning_view(i):
        post(body(vids[i]))

    def heartbeat(i):
        post(body(vids[i], hb=True))

    n = args.requests
    timed(baseline, 50)  # warm-up
    base = timed(baseline, n)
    first = timed(first_view, n)
    again = timed(returning_view, n)
    beat = timed(heartbeat, n)
    base_after = timed(baseline, n)
    base = (base + base_after) / 2
    print(f"requests per case: {n}; baseline GET /s/<key>.js median {base * 1000:.2f} ms")
    for name, value in (
        ("first page view (new visitor, new lease)", first),
        ("returning page view (lease extended)", again),
        ("heartbeat", beat),
    ):
        print(f"{name:45s} {value / base:5.2f} x baseline  ({value * 1000:.2f} ms)")


if __name__ == "__main__":
    main()
