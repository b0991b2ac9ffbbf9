"""A new visitor's first page view: one SQL statement writes the visitor, the
session and the lease, with the same rules as the ORM path (LRU, per-IP cap,
expired leases released first, exhaustion policy, the unique index as the
final arbiter)."""

import json
from datetime import UTC, datetime

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from substitution.models import Address, Lease, Pool, PoolExhaustion, StaticAddress
from substitution.rules import forget_snapshots
from tests.factories import make_setup, minutes
from tracker import services
from tracker.models import Channel, Session, Visitor

pytestmark = pytest.mark.django_db(transaction=True)
T0 = datetime(2025, 7, 31, 12, 0, tzinfo=UTC)
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"
URL = "https://shop.test/?utm_source=newsletter&utm_medium=email&utm_campaign=autumn"


@pytest.fixture(autouse=True)
def _fresh_snapshots():
    forget_snapshots()
    yield
    forget_snapshots()


def first_visit(setup, *, now=T0, ip="198.51.100.7", url=URL) -> dict:
    raw = json.dumps({"v": 1, "site": setup.site.site_key, "vid": None, "url": url, "ref": "", "consent": True})
    request = services.parse_request(raw.encode())
    return services.collect(request=request, origin="https://shop.test", user_agent=BROWSER, now=now, ip=ip)


def test_a_new_visitors_page_view_is_one_database_statement():
    setup = make_setup()
    first_visit(setup, ip="203.0.113.9")  # the process now keeps the site's configuration
    with CaptureQueriesContext(connection) as queries:
        answer = first_visit(setup)
    assert len(queries) == 1, [q["sql"] for q in queries]
    visitor = Visitor.objects.get(vid=answer["vid"])
    lease = Lease.objects.get(visitor=visitor)
    assert answer["subs"] == [{"block": setup.block.pk, "email": lease.address.email}]
    assert answer["exp"] == int((T0 + minutes(30)).timestamp())
    assert (lease.started_at, lease.last_activity_at, lease.expires_at) == (T0, T0, T0 + minutes(30))
    assert lease.ip_hash == services.ip_hash("198.51.100.7")
    assert Address.objects.get(pk=lease.address_id).held
    session = Session.objects.get(visitor=visitor)
    assert (session.channel, session.source, session.utm_campaign, session.page_views) == (
        Channel.EMAIL,
        "newsletter",
        "autumn",
        1,
    )
    assert (session.last_urls, session.device_type, session.returning_visitor) == ([URL], "desktop", False)
    assert str(session.ip_truncated) == "198.51.100.0"


def test_a_first_visits_rows_are_the_ones_the_orm_path_records_for_the_same_page_view():
    setup = make_setup()
    page = {
        "v": 1,
        "site": setup.site.site_key,
        "url": URL + "&gclid=abc123",
        "ref": "https://news.example.org/autumn",
        "screen": "1920x1080",
        "lang": "ru-RU",
        "ga": "GA1.1.123.456",
        "ym": "1700000000123",
        "consent": True,
    }
    answers = []
    for vid in (None, "ormpathvisitor01"):  # no id: the statement; an unknown id: the ORM path
        request = services.parse_request(json.dumps({**page, "vid": vid}).encode())
        answers.append(services.collect(request=request, origin="https://shop.test", user_agent=BROWSER, now=T0))
    columns = [field.attname for field in Session._meta.concrete_fields if field.attname not in ("id", "visitor_id")]
    first, orm = (Session.objects.filter(visitor__vid=answer["vid"]).values(*columns).get() for answer in answers)
    assert first == orm
    assert (first["click_ids"], first["ga_client_id"], first["page_views"]) == ({"gclid": "abc123"}, "GA1.1.123.456", 1)
    visitors = Visitor.objects.filter(vid__in=[answer["vid"] for answer in answers])
    assert sorted(visitors.values_list("created_at", "last_seen_at")) == [(T0, T0), (T0, T0)]
    assert all(Lease.objects.filter(visitor=visitor).count() == 1 for visitor in visitors)


def test_first_visits_take_never_used_addresses_then_the_one_released_longest_ago():
    setup = make_setup(pool_size=4)
    first, second, third, fourth = Address.objects.filter(pool=setup.pool).order_by("id")
    Address.objects.filter(pk=first.pk).update(last_released_at=T0 - minutes(10))
    Address.objects.filter(pk=second.pk).update(last_released_at=T0 - minutes(50))
    taken = [first_visit(setup, ip=f"198.51.100.{n}")["subs"][0]["email"] for n in range(4)]
    assert taken == [third.email, fourth.email, second.email, first.email]


def test_a_lease_never_starts_before_its_address_was_released():
    setup = make_setup(pool_size=1)
    released = T0 + minutes(1)  # another web process's clock runs a little ahead
    Address.objects.filter(pool=setup.pool).update(last_released_at=released)
    answer = first_visit(setup)
    lease = Lease.objects.get()
    assert lease.started_at == released
    assert answer["exp"] == int((released + minutes(30)).timestamp())


def test_a_lease_that_ran_out_before_the_free_address_was_released_is_released_and_its_address_taken():
    setup = make_setup(pool_size=2, hold_minutes=30)
    earlier = first_visit(setup, now=T0 - minutes(60), ip="198.51.100.1")
    old = Lease.objects.get()
    assert old.expires_at == T0 - minutes(30)
    # The other address was released after the old lease ran out.
    Address.objects.exclude(pk=old.address_id).update(last_released_at=T0 - minutes(10))
    answer = first_visit(setup, now=T0, ip="198.51.100.2")
    old.refresh_from_db()
    assert (old.released_at, old.end_reason) == (T0 - minutes(30), Lease.EndReason.EXPIRED)
    assert answer["subs"][0]["email"] == earlier["subs"][0]["email"]  # free longest (LRU)
    assert Lease.objects.filter(released_at__isnull=True).count() == 1


def test_a_lease_that_ran_out_after_the_free_address_was_released_waits_for_the_periodic_release():
    setup = make_setup(pool_size=3, hold_minutes=30)
    first_visit(setup, now=T0 - minutes(60), ip="198.51.100.1")
    old = Lease.objects.get()
    first_visit(setup, ip="203.0.113.9")  # the process now keeps the site's configuration
    oldest = Address.objects.filter(held=False).order_by("id").first()
    Address.objects.filter(pk=oldest.pk).update(last_released_at=T0 - minutes(45))
    with CaptureQueriesContext(connection) as queries:
        answer = first_visit(setup, now=T0, ip="198.51.100.2")
    assert len(queries) == 1
    assert answer["subs"][0]["email"] == oldest.email
    old.refresh_from_db()
    assert old.released_at is None


def test_a_client_ip_at_the_pools_cap_gets_the_original_address_but_a_session():
    setup = make_setup(pool_size=5)
    setup.pool.max_live_leases_per_ip = 2
    setup.pool.save()
    answers = [first_visit(setup) for _ in range(3)]
    assert [bool(a["subs"]) for a in answers] == [True, True, False]
    assert answers[2]["exp"] is None
    assert Lease.objects.count() == 2
    assert Session.objects.count() == Visitor.objects.count() == 3
    assert first_visit(setup, ip="203.0.113.9")["subs"]  # another client is not capped


def test_a_first_visit_to_an_exhausted_pool_keeps_the_original_and_counts_the_event():
    setup = make_setup(pool_size=1)
    assert first_visit(setup, ip="198.51.100.1")["subs"]
    answer = first_visit(setup, ip="198.51.100.2")
    assert (answer["subs"], answer["exp"]) == ([], None)
    assert PoolExhaustion.objects.filter(pool=setup.pool).count() == 1
    assert Visitor.objects.count() == 2


def test_a_first_visit_to_an_exhausted_pool_with_take_over_takes_the_least_recently_active_lease():
    setup = make_setup(pool_size=1, policy=Pool.ExhaustedPolicy.TAKE_OVER)
    victim = first_visit(setup, now=T0, ip="198.51.100.1")
    thief = first_visit(setup, now=T0 + minutes(1), ip="198.51.100.2")
    assert thief["subs"] == victim["subs"]
    live = Lease.objects.get(released_at__isnull=True)
    assert live.visitor.vid == thief["vid"]
    assert Lease.objects.get(visitor__vid=victim["vid"]).end_reason == Lease.EndReason.TAKEN_OVER


def test_a_static_rule_answers_a_first_visit_with_its_channel_address_and_no_lease():
    setup = make_setup()
    static = StaticAddress.objects.create(project=setup.project, name="Maps", email="maps@shop.test")
    maps = setup.project.rules.create(name="Maps", order=0, kind="static", static_address=static)
    maps.sites.add(setup.site)
    maps.blocks.add(setup.block)
    setup.rule.order = 1
    setup.rule.save()
    first_visit(setup, ip="203.0.113.9")
    with CaptureQueriesContext(connection) as queries:
        answer = first_visit(setup)
    assert len(queries) == 1
    assert answer["subs"] == [{"block": setup.block.pk, "email": "maps@shop.test"}]
    assert not Lease.objects.exists()
    assert Session.objects.get(visitor__vid=answer["vid"]).page_views == 1


def test_a_live_lease_the_flags_missed_is_never_doubled():
    setup = make_setup(pool_size=1)
    first_visit(setup, ip="198.51.100.1")
    # A free flag out of step with the leases: the partial unique index on
    # live leases still refuses a second one on the address.
    Address.objects.filter(pool=setup.pool).update(held=False)
    answer = first_visit(setup, ip="198.51.100.2")
    assert answer["subs"] == []
    assert Lease.objects.filter(released_at__isnull=True).count() == 1
    assert Lease.objects.count() == 1


def test_a_first_visit_on_a_connection_the_server_closed_meanwhile_reconnects():
    setup = make_setup()
    first_visit(setup, ip="203.0.113.9")
    backend = connection.connection.info.backend_pid
    other = connections.create_connection("default")
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [backend])
    other.close()
    answer = first_visit(setup)
    assert answer["subs"]
    assert connection.connection.info.backend_pid != backend
    assert Lease.objects.filter(visitor__vid=answer["vid"]).count() == 1


def test_the_allocation_tables_are_vacuumed_after_a_fixed_number_of_changes_not_a_share():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN ('substitution_address', 'substitution_lease')"
        )
        options = dict(cursor.fetchall())
    for table in ("substitution_address", "substitution_lease"):
        assert "autovacuum_vacuum_scale_factor=0" in options[table]
        assert "autovacuum_vacuum_threshold=1000" in options[table]


def test_the_first_visit_statement_is_prepared_once_per_connection():
    setup = make_setup()
    for n in range(3):
        first_visit(setup, ip=f"198.51.100.{n}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'WITH new_visitor%%'")
        assert cursor.fetchone()[0] == 1


def _flushed_after_each(setup, visits: int) -> list[bool]:
    """For each first visit: whether PostgreSQL's log was already on disk up
    to the end of its commit when the statement returned (read at once)."""
    flushed = []
    with connection.cursor() as cursor:
        for n in range(visits):
            first_visit(setup, ip=f"198.51.100.{n + 1}")
            cursor.execute("SELECT pg_current_wal_flush_lsn() >= pg_current_wal_insert_lsn()")
            flushed.append(cursor.fetchone()[0])
    return flushed


def test_a_first_visit_commits_without_waiting_for_the_log_flush_unless_asked_to(settings):
    setup = make_setup(pool_size=20)
    first_visit(setup, ip="203.0.113.9")  # the process now keeps the site's configuration
    settings.COLLECT_WAIT_FOR_DISK = True
    assert _flushed_after_each(setup, 5) == [True] * 5
    settings.COLLECT_WAIT_FOR_DISK = False
    # The log writer flushes by itself every 200 ms: most commits are read unflushed.
    assert _flushed_after_each(setup, 5).count(False) >= 3
    assert Lease.objects.filter(pool=setup.pool, released_at=None).count() == 11
