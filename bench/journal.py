"""The journal's server time with 10,000 and then 1,000,000 leads in one
project, measured in one run (target, issue 19: the 1,000,000-lead times at
most 1.5x the 10,000-lead times, for every list filter and for the first
page of the end-to-end report in each of its groupings).

    .venv/bin/python bench/journal.py [--small 10000] [--large 1000000] [--repeat 30] [--reuse [--recount]]

In-process on PostgreSQL, DEBUG off, through Django's test client: the time
from request to rendered response, no network. Two throwaway databases are
filled in one run: `emailtrack_bench_journal_small` gets 10,000 leads, then
`emailtrack_bench_journal_large` the same 10,000 and then the rest of the
million (INSERT ... SELECT generate_series; a spread like a busy shop's: two
years, ten channels, 200 campaigns (a few large ones and a long tail),
repeat customers, three leads in ten tagged), with sessions
and cost rows in proportion (a visitor per lead with three sessions each,
spread like the leads; a cost row per ten leads). The report's days are
then counted from those rows by `manage.py rebuild_report_days`, as after
any bulk load. Measurement
rounds alternate between the two, so other load on the machine falls on both
sizes alike; a bare endpoint (/api/v1/ping) is measured too as the baseline.
Each filter's first page is full (50 leads) at both sizes, so the two times
compare the same page read from a small and a large journal, not a short
page with a full one (the rows shown are printed before the times).

With --reuse, databases left by an earlier run with the same sizes and
spread are kept (filling a million leads takes a while) and migrated; with
--recount too, their report days are counted again by the current code
(needed after a change to how they are counted; a few minutes at 1,000,000).
"""

import argparse
import importlib
import io
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ROW_MARK = b'class="lead"'
SMALL_DB, LARGE_DB = "emailtrack_bench_journal_small", "emailtrack_bench_journal_large"
os.environ.update(
    DATABASE_URL=f"postgres://postgres:postgres@127.0.0.1:5432/{SMALL_DB}",
    REDIS_URL="redis://127.0.0.1:6379/12",
    SECRET_KEY="bench-secret-key-bench-secret-key-bench-secret-key",
    ENCRYPTION_KEY="Zk1pQmV2b3l3b2x2T1N0b0lQeGJYc3N2c2h6d0F0d0k=",
    ALLOWED_HOSTS="*",
    STATIC_ROOT="/tmp/emailtrack-bench-journal-static",
    DJANGO_SETTINGS_MODULE="config.settings",
)
os.environ.pop("DEBUG", None)

# A campaign's number: 200 of them, a few large and a long tail (camp-0 has
# 7% of the campaign leads, camp-1 3%, camp-7 1.3%, camp-199 0.25%), so
# one campaign fills a first page at 10,000 leads as at 1,000,000.
CAMPAIGN = "floor(200 * power((h4 %% 1000000) / 1000000.0, 2))::int"

# One row per lead; h1..h4 are independent pseudo-random numbers of the
# series number g, so every run makes the same data.
INSERT_LEADS = """
WITH g AS (
    SELECT n,
           abs(hashint4(n)::bigint) AS h1,
           abs(hashint4(n + 1000000007)::bigint) AS h2,
           abs(hashint4(n + 2000000011)::bigint) AS h3,
           abs(hashint4(n + 500000003)::bigint) AS h4
    FROM generate_series(%(first)s, %(last)s) AS n
), c AS (
    SELECT *,
           (ARRAY['paid','paid','paid','organic','organic','direct','direct','social','referral','email',
                  'paid_social','display','static','unknown','paid','organic','direct','paid','organic','referral'])
           [1 + h1 %% 20] AS channel
    FROM g
)
INSERT INTO attribution_lead (
    project_id, created_at, last_letter_at, updated_at, sender_email, sender_name, subject, recipient,
    match_kind, first_contact, status, comment, deal_amount, site_id,
    channel, source, medium, campaign, term, content, keyword, landing_url, referrer, device_type, country, city
)
SELECT
    %(project)s,
    now() - make_interval(secs => h1 %% (730 * 86400)),
    now() - make_interval(secs => h1 %% (730 * 86400)),
    now(),
    'client' || (h2 %% %(customers)s) || '@mail' || (h2 %% 97) || '.test',
    'Client ' || (h2 %% %(customers)s),
    (ARRAY['Price list, please','Order of bricks','Delivery question','Invoice needed','Wholesale terms',
           'Do you ship to Kazan?','Request for quote','Partnership','Return of goods','Availability'])
    [1 + h3 %% 10] || ' #' || n,
    'info+' || (h3 %% 500) || '@shop.test',
    (ARRAY['live_lease','live_lease','live_lease','live_lease','live_lease','live_lease','live_lease',
           'live_lease','after_hold','after_hold','reused_since','taken_over','static','corrected',
           'ambiguous','unknown','unknown','exhausted','live_lease','live_lease'])[1 + h2 %% 20],
    h3 %% 10 < 7,
    (ARRAY['new','new','new','new','new','new','in_progress','in_progress','won','won','lost','spam'])
    [1 + h1 %% 12],
    '',
    CASE WHEN h1 %% 12 IN (8, 9) THEN (h2 %% 100000) + 0.5 END,
    %(site)s + h3 %% 3,
    channel,
    CASE channel WHEN 'paid' THEN (ARRAY['google','yandex'])[1 + h2 %% 2]
                 WHEN 'organic' THEN (ARRAY['google','yandex','bing'])[1 + h2 %% 3]
                 WHEN 'social' THEN 'vk.com' WHEN 'referral' THEN 'partner' || (h2 %% 50) || '.test'
                 WHEN 'email' THEN 'newsletter' WHEN 'paid_social' THEN 'vk_ads' WHEN 'display' THEN 'rtb'
                 WHEN 'static' THEN 'billboard' ELSE '' END,
    CASE channel WHEN 'paid' THEN 'cpc' WHEN 'organic' THEN 'organic' WHEN 'email' THEN 'email'
                 WHEN 'paid_social' THEN 'cpc' WHEN 'display' THEN 'banner' WHEN 'referral' THEN 'referral'
                 ELSE '' END,
    CASE WHEN channel IN ('paid','email','paid_social','display') THEN 'camp-' || {CAMPAIGN} ELSE '' END,
    '', '',
    CASE WHEN channel IN ('paid','organic') THEN 'bricks ' || (h3 %% 1000) ELSE '' END,
    'https://shop.test/catalog/' || (h1 %% 300),
    '',
    (ARRAY['desktop','mobile','mobile','tablet'])[1 + h2 %% 4],
    'RU', (ARRAY['Moscow','Kazan','Perm','Omsk'])[1 + h3 %% 4]
FROM c
""".replace("{CAMPAIGN}", CAMPAIGN)

INSERT_TAGS = """
INSERT INTO attribution_lead_tags (lead_id, tag_id)
SELECT id, %(tag)s + abs(hashint4(id::int)::bigint) %% 10
FROM attribution_lead
WHERE project_id = %(project)s AND id > %(after)s AND abs(hashint4(id::int + 7)::bigint) %% 10 < 3
"""


# A visitor per lead, three sessions each, spread over the same two years and
# channels as the leads (so a 30-day report has a thirtieth of them per day).
INSERT_VISITORS = """
INSERT INTO tracker_visitor (site_id, vid, created_at, last_seen_at)
SELECT %(site)s + abs(hashint4(n + 5))::bigint %% 3, 'bench-' || n,
       now() - make_interval(secs => abs(hashint4(n + 9)::bigint) %% (730 * 86400)), now()
FROM generate_series(%(first)s, %(last)s) AS n
"""
INSERT_SESSIONS = """
WITH g AS (
    SELECT v.id AS visitor_id, v.id * 3 + k AS n,
           abs(hashint4((v.id * 3 + k)::int)::bigint) AS h1,
           abs(hashint4((v.id * 3 + k)::int + 1000000007)::bigint) AS h2,
           abs(hashint4((v.id * 3 + k)::int + 2000000011)::bigint) AS h3,
           abs(hashint4((v.id * 3 + k)::int + 500000003)::bigint) AS h4
    FROM tracker_visitor v CROSS JOIN generate_series(0, 2) AS k
    WHERE v.id > %(after)s
), c AS (
    SELECT *,
           (ARRAY['paid','paid','paid','organic','organic','direct','direct','social','referral','email',
                  'paid_social','display','static','unknown','paid','organic','direct','paid','organic','referral'])
           [1 + h1 %% 20] AS channel,
           now() - make_interval(secs => h1 %% (730 * 86400)) AS at
    FROM g
)
INSERT INTO tracker_session (
    visitor_id, started_at, last_seen_at, returning_visitor, landing_url, referrer,
    utm_source, utm_medium, utm_campaign, utm_term, utm_content, click_ids, channel, source, keyword,
    search_engine, source_inherited, page_views, last_urls, device_type, os, os_version, browser,
    browser_version, user_agent, screen, lang, ga_client_id, ym_client_id, country, region, city
)
SELECT
    visitor_id, at, at + interval '5 minutes', h2 %% 3 = 0, 'https://shop.test/catalog/' || (h1 %% 300), '',
    '',
    CASE channel WHEN 'paid' THEN 'cpc' WHEN 'organic' THEN 'organic' WHEN 'email' THEN 'email'
                 WHEN 'paid_social' THEN 'cpc' WHEN 'display' THEN 'banner' WHEN 'referral' THEN 'referral'
                 ELSE '' END,
    CASE WHEN channel IN ('paid','email','paid_social','display') THEN 'camp-' || {CAMPAIGN} ELSE '' END,
    '', '', '{}'::jsonb, channel,
    CASE channel WHEN 'paid' THEN (ARRAY['google','yandex'])[1 + h2 %% 2]
                 WHEN 'organic' THEN (ARRAY['google','yandex','bing'])[1 + h2 %% 3]
                 WHEN 'social' THEN 'vk.com' WHEN 'referral' THEN 'partner' || (h2 %% 50) || '.test'
                 WHEN 'email' THEN 'newsletter' WHEN 'paid_social' THEN 'vk_ads' WHEN 'display' THEN 'rtb'
                 WHEN 'static' THEN 'billboard' ELSE '' END,
    CASE WHEN channel IN ('paid','organic') THEN 'bricks ' || (h3 %% 1000) ELSE '' END,
    '', false, 1 + h2 %% 5, '[]'::jsonb, (ARRAY['desktop','mobile','mobile','tablet'])[1 + h2 %% 4],
    '', '', '', '', '', '', 'ru', '', '', 'RU', '', (ARRAY['Moscow','Kazan','Perm','Omsk'])[1 + h3 %% 4]
FROM c
""".replace("{CAMPAIGN}", CAMPAIGN)
# A cost row per ten leads: day, source, campaign (unique while n < 730 * 400).
INSERT_COSTS = """
INSERT INTO costs_cost (project_id, day, source, medium, campaign, amount, origin, updated_at)
SELECT %(project)s, current_date - (n %% 730), (ARRAY['google','yandex'])[1 + (n / 730 / 200) %% 2], 'cpc',
       'camp-' || ((n / 730) %% 200), 10 + abs(hashint4(n))::bigint %% 5000, 'api', now()
FROM generate_series(%(first)s, %(last)s) AS n
ON CONFLICT DO NOTHING
"""
# The project's name says which spread of data it holds: --reuse keeps a
# database only when it holds this one.
BENCH = "Bench (spread 2)"
SESSION_TRIGGERS = ("costs_report_day_sessions_added", "costs_report_day_sessions_removed")


def pages(project, site, tag) -> dict[str, str]:
    """The pages measured; the same names in both steps. The deep page starts
    after the 1,000th newest lead, and the whole-address search looks for the
    sender of a lead made in the first step, so both exist in both steps."""
    from datetime import timedelta

    from django.utils import timezone

    from attribution.models import Lead
    from costs.endtoend import GROUPINGS
    from journal.selectors import make_cursor

    leads = Lead.objects.filter(project_id=project)
    deep = make_cursor(leads.order_by("-created_at", "-id")[999])
    sender = leads.get(pk=leads.order_by("id").values_list("id", flat=True)[1234]).sender_email
    week_start = (timezone.localdate() - timedelta(days=365)).isoformat()
    week_end = (timezone.localdate() - timedelta(days=359)).isoformat()
    base = f"/journal/?project={project}"
    return {
        "baseline: /api/v1/ping (no journal)": "/api/v1/ping",
        "first page": base,
        "page 21 (after 1,000 leads)": f"{base}&before={quote(deep)}",
        "filtered: channel=paid": f"{base}&channel=paid",
        "filtered: paid, won, first contact": f"{base}&channel=paid&status=won&contact=first",
        "filtered: part of a campaign (camp-7)": f"{base}&campaign=CAMP-7",
        "filtered: exactly one campaign": f"{base}&campaign=%22camp-1%22",
        "filtered: part of a source (yandex)": f"{base}&source=Yandex",
        "filtered: low-confidence match": f"{base}&match=low",
        "filtered: one week a year ago": f"{base}&date_from={week_start}&date_to={week_end}",
        "filtered: a tag": f"{base}&tag={tag}",
        "filtered: site and tag": f"{base}&site={site}&tag={tag}",
        "search: a whole sender address": f"{base}&q={quote(sender)}",
        "search: part of an address (rare)": f"{base}&q=client1234%40",
        "search: a subject word": f"{base}&q=wholesale",
        **{
            f"report, 30 days, by {grouping}": f"/journal/reports/?project={project}&group={grouping}"
            for grouping in GROUPINGS
        },
    }


def week_ago() -> str:
    from datetime import timedelta

    from django.utils import timezone

    return (timezone.localdate() - timedelta(days=6)).isoformat()


def use(database: str) -> None:
    """Point Django's connection at one of the two databases (reconnects on next use)."""
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = database


def existing(database: str):
    """The project, sites, tags and signed-in client an earlier run left in
    `database` (after migrating it), or None."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from attribution.models import Tag
    from projects.models import Project
    from tracker.models import Site

    use(database)
    call_command("migrate", verbosity=0)
    project = Project.objects.filter(name=BENCH).first()
    user = get_user_model().objects.filter(username="bench").first()
    if project is None or user is None:
        return None
    client = Client()
    client.force_login(user)
    sites = list(Site.objects.filter(project=project).order_by("pk"))
    tags = list(Tag.objects.filter(project=project).order_by("pk"))
    return client, project, sites, tags


def recount(database: str, project) -> None:
    """The report days of a reused database counted again by this code."""
    from django.core.management import call_command
    from django.db import connection

    use(database)
    started = time.perf_counter()
    call_command("rebuild_report_days", "--project", str(project.pk), verbosity=0, stdout=io.StringIO())
    with connection.cursor() as cursor:
        for table in ("costs_reportday", "costs_sessionday", "costs_costweek", "costs_costsourceday"):
            cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("CHECKPOINT")
    print(f"{database}: reused; report days counted again in {time.perf_counter() - started:.1f} s")


def lead_count(database: str) -> int:
    from django.db import connection

    use(database)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM attribution_lead")
        return cursor.fetchone()[0]


def prepare(database: str):
    """Schema, a project with three sites and ten tags, a marketer signed in."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from attribution.models import Tag
    from projects.models import Membership, Project
    from tests.factories import make_setup
    from tracker.models import Site

    use(database)
    call_command("migrate", verbosity=0)
    setup = make_setup(name=BENCH)
    project = setup.project
    Project.objects.filter(pk=project.pk).update(time_zone="Europe/Moscow")
    sites = [setup.site] + [
        Site.objects.create(project=project, name=f"Site {n}", original_email=f"s{n}@shop.test") for n in (2, 3)
    ]
    tags = [Tag.objects.create(project=project, name=f"tag-{n}") for n in range(10)]
    user = get_user_model().objects.create_user("bench", password="bench-password", is_staff=True)
    Membership.objects.create(project=project, user=user, role=Membership.Role.MARKETER)
    client = Client()
    client.force_login(user)
    return client, project, sites, tags


def fill(database: str, project, sites, tags, first: int, last: int) -> int:
    """Leads `first`..`last` of the series into `database`, with their
    visitors, sessions and costs; returns its lead count."""
    from django.core.management import call_command
    from django.db import connection

    use(database)
    started = time.perf_counter()
    # A bulk load is faster with the journal's indexes built once afterwards
    # (by the migration's own code) than kept up row by row.
    indexes = [
        importlib.import_module(f"attribution.migrations.{name}")
        for name in ("0004_journal_indexes", "0005_journal_source_search")
    ]
    editor = SimpleNamespace(connection=connection)
    for migration in indexes:
        migration.drop(None, editor)
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM attribution_lead")
        after = cursor.fetchone()[0]
        params = {"first": first, "last": last, "project": project.pk, "site": sites[0].pk}
        cursor.execute(INSERT_LEADS, {**params, "customers": max(last // 2, 1)})
        cursor.execute(INSERT_TAGS, {"tag": tags[0].pk, "project": project.pk, "after": after})
        # Sessions in bulk: counted into the report's days once, by the rebuild below.
        cursor.execute("SELECT coalesce(max(id), 0) FROM tracker_visitor")
        after_visitor = cursor.fetchone()[0]
        cursor.execute(INSERT_VISITORS, params)
        for trigger in SESSION_TRIGGERS:
            cursor.execute(f"ALTER TABLE tracker_session DISABLE TRIGGER {trigger}")
        cursor.execute(INSERT_SESSIONS, {"after": after_visitor})
        for trigger in SESSION_TRIGGERS:
            cursor.execute(f"ALTER TABLE tracker_session ENABLE TRIGGER {trigger}")
        cursor.execute(INSERT_COSTS, {"project": project.pk, "first": first // 10, "last": last // 10 - 1})
    for migration in indexes:
        migration.create(None, editor)
    loaded = time.perf_counter()
    call_command("rebuild_report_days", "--project", str(project.pk), verbosity=0, stdout=io.StringIO())
    rebuilt = time.perf_counter() - loaded
    with connection.cursor() as cursor:
        for table in ("attribution_lead", "attribution_lead_tags", "tracker_visitor", "tracker_session"):
            cursor.execute(f"VACUUM ANALYZE {table}")
        for table in ("costs_cost", "costs_costweek", "costs_costsourceday", "costs_reportday", "costs_sessionday"):
            cursor.execute(f"VACUUM ANALYZE {table}")
        # Write the inserted pages out now, not during the measurement.
        cursor.execute("CHECKPOINT")
        cursor.execute("SELECT count(*) FROM attribution_lead")
        total = cursor.fetchone()[0]
        cursor.execute(
            "SELECT (SELECT count(*) FROM tracker_session), (SELECT count(*) FROM costs_cost),"
            " (SELECT count(*) FROM costs_reportday) + (SELECT count(*) FROM costs_sessionday)"
        )
        sessions, costs, days = cursor.fetchone()
    print(
        f"{database}: {total:,} leads, {sessions:,} sessions, {costs:,} cost rows, {days:,} report days"
        f" ({time.perf_counter() - started:.1f} s to insert, count days, analyze, checkpoint;"
        f" {rebuilt:.1f} s of it counting the days)"
    )
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--reuse", action="store_true", help="keep databases an earlier run filled with these sizes")
    parser.add_argument("--recount", action="store_true", help="with --reuse: count their report days again")
    args = parser.parse_args()
    import psycopg

    sizes = {SMALL_DB: args.small, LARGE_DB: args.large}
    with psycopg.connect("postgresql://postgres:postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        present = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    import django

    django.setup()
    from django.core.management import call_command

    call_command("collectstatic", verbosity=0, interactive=False)
    prepared, counts = {}, {}
    if args.reuse and present >= set(sizes):
        for database, size in sizes.items():
            found = existing(database)
            if found is None or lead_count(database) != size:
                prepared = {}
                break
            prepared[database] = found
    if prepared:
        for database, (_client, project, *_rest) in prepared.items():
            if args.recount:
                recount(database, project)
            counts[database] = lead_count(database)
            print(f"{database}: reused, {counts[database]:,} leads")
    else:
        use("postgres")
        from django.db import connection

        connection.close()
        with psycopg.connect("postgresql://postgres:postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            for database in (SMALL_DB, LARGE_DB):
                conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {database}")
        prepared = {database: prepare(database) for database in (SMALL_DB, LARGE_DB)}
        # The same first leads in both; then the large one grows to its full size.
        steps = {SMALL_DB: [(1, args.small)], LARGE_DB: [(1, args.small), (args.small + 1, args.large)]}
        for database, parts in steps.items():
            _client, project, sites, tags = prepared[database]
            for first, last in parts:
                counts[database] = fill(database, project, sites, tags, first, last)
    time.sleep(2)

    urls, samples = {}, {database: {} for database in prepared}
    for database, (client, project, sites, tags) in prepared.items():
        use(database)
        urls[database] = pages(project.pk, sites[1].pk, tags[3].pk)
        rows = []
        for name, url in urls[database].items():  # warm caches; show what each page holds
            for _ in range(3):
                response = client.get(url)
                assert response.status_code == 200, url
            shown = response.content.count(ROW_MARK)
            rows.append(f"{name.split(':')[-1].strip()} {shown}")
            samples[database][name] = []
        print(f"rows per page with {counts[database]:,} leads: " + ", ".join(rows))
    # Rounds alternate between the databases, so load from other processes on
    # the machine falls on both sizes alike.
    for _round in range(args.repeat):
        for database, (client, *_rest) in prepared.items():
            use(database)
            client.get(urls[database]["first page"])  # reconnect outside the measurement
            for name, url in urls[database].items():
                started = time.perf_counter()
                response = client.get(url)
                samples[database][name].append(time.perf_counter() - started)
                assert response.status_code == 200

    # For information, no target: an export reads every lead of its period,
    # so it grows with the leads in it (a 1,000,000-lead shop has a hundred
    # times more leads in a week than a 10,000-lead one).
    info = {}
    for database, (client, project, *_rest) in prepared.items():
        use(database)
        base = f"project={project.pk}"
        info[database] = {}
        for name, url in (("CSV export, last 7 days", f"/journal/export.csv?{base}&date_from={week_ago()}"),):
            times, size = [], 0
            for _ in range(5):
                started = time.perf_counter()
                response = client.get(url)
                size = sum(len(chunk) for chunk in response) if response.streaming else len(response.content)
                times.append(time.perf_counter() - started)
            info[database][name] = (statistics.median(times), size)

    small = {name: statistics.median(values) for name, values in samples[SMALL_DB].items()}
    large = {name: statistics.median(values) for name, values in samples[LARGE_DB].items()}
    small_n, large_n = counts[SMALL_DB], counts[LARGE_DB]
    print(f"\nmedian server time over {args.repeat} requests each (DEBUG off, in-process)")
    print(f"{'page':38s} {small_n:>9,} leads {large_n:>9,} leads   ratio")
    worst = 0.0
    for name in small:
        ratio = large[name] / small[name]
        if not name.startswith("baseline"):
            worst = max(worst, ratio)
        print(f"{name:38s} {small[name] * 1000:9.2f} ms {large[name] * 1000:12.2f} ms   {ratio:5.2f}")
    headline = large["filtered: channel=paid"] / small["filtered: channel=paid"]
    first = large["first page"] / small["first page"]
    reports = [large[name] / small[name] for name in small if name.startswith("report")]
    print(
        f"\nfirst page: {first:.2f}x; filtered page (channel=paid): {headline:.2f}x;"
        f" worst report grouping: {max(reports):.2f}x; worst of all: {worst:.2f}x"
    )
    print("target: <= 1.50x")
    print("\nfor information (no target; this reads every lead of its period):")
    for name, (small_time, small_size) in info[SMALL_DB].items():
        large_time, large_size = info[LARGE_DB][name]
        print(
            f"{name:38s} {small_time * 1000:9.2f} ms {large_time * 1000:12.2f} ms"
            f"   ({small_size:,} and {large_size:,} bytes)"
        )


if __name__ == "__main__":
    main()
