"""Several tracked addresses on one site: each block decided by its own first
matching rule, one lease per pool for one visit, in one statement for a new
visitor and one Redis round trip for a returning one; the lead shows the
block it came through; geo, schedule and current-page conditions."""

import json
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from attribution.models import Lead
from mailbox_sync.services import ingest_raw
from substitution import activity
from substitution.models import Block, Lease, Pool, Rule, RuleCondition
from substitution.services import pool_fill
from tests.factories import letter_bytes, make_setup, minutes
from tracker import services
from tracker.models import Session

pytestmark = pytest.mark.django_db
T0 = datetime(2025, 7, 30, 12, 0, tzinfo=UTC)  # a Wednesday, 15:00 in Moscow
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"
URL = "https://shop.test/?utm_source=newsletter&utm_medium=email&utm_campaign=autumn"


@pytest.fixture(autouse=True)
def _fresh(fresh_redis):
    yield


def two_blocks(**setup_options):
    """A shop with sales@ (the site's address, "find in the page") and
    support@ (its own block, its own pool and rule)."""
    setup = make_setup(original="sales@shop.test", **setup_options)
    setup.block.original_email = "sales@shop.test"
    setup.block.save()
    support_pool = Pool.objects.create(project=setup.project, name="Support", base_email="support@shop.test", size=5)
    pool_fill(support_pool)
    support = Block.objects.create(project=setup.project, name="Support", original_email="support@shop.test")
    rule = Rule.objects.create(project=setup.project, name="Support", pool=support_pool, order=1)
    rule.sites.add(setup.site)
    rule.blocks.add(support)
    setup.support, setup.support_pool, setup.support_rule = support, support_pool, rule
    return setup


def collect(setup, *, vid=None, now=T0, ip="198.51.100.7", url=URL, consent=True) -> dict:
    raw = json.dumps({"v": 1, "site": setup.site.site_key, "vid": vid, "url": url, "ref": "", "consent": consent})
    request = services.parse_request(raw.encode())
    return services.collect(request=request, origin="https://shop.test", user_agent=BROWSER, now=now, ip=ip)


def by_block(answer) -> dict:
    return {sub["block"]: sub["email"] for sub in answer["subs"]}


def test_it_leases_one_address_per_pool_to_a_visit_and_shows_each_in_its_block():
    setup = two_blocks()
    answer = by_block(collect(setup))
    assert set(answer) == {setup.block.pk, setup.support.pk}
    assert answer[setup.block.pk].startswith("sales+")
    assert answer[setup.support.pk].startswith("support+")
    leases = {lease.pool_id: lease for lease in Lease.objects.all()}
    assert set(leases) == {setup.pool.pk, setup.support_pool.pk}
    assert leases[setup.pool.pk].block_id == setup.block.pk
    assert leases[setup.support_pool.pk].block_id == setup.support.pk
    assert len({lease.visitor_id for lease in leases.values()}) == 1

    second = by_block(collect(setup, ip="198.51.100.8"))
    assert second[setup.block.pk] != answer[setup.block.pk]
    assert second[setup.support.pk] != answer[setup.support.pk]


@pytest.mark.django_db(transaction=True)
def test_a_new_visitors_two_leases_are_written_in_one_database_statement():
    setup = two_blocks()
    collect(setup, ip="203.0.113.9")  # the process now keeps the site's configuration
    with CaptureQueriesContext(connection) as queries:
        answer = collect(setup)
    assert len(queries) == 1
    assert len(answer["subs"]) == 2
    assert Lease.objects.filter(visitor__vid=answer["vid"]).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_returning_visitor_keeps_both_addresses_from_redis_and_both_leases_are_extended():
    setup = two_blocks()
    first = collect(setup)
    with CaptureQueriesContext(connection) as queries:
        again = collect(setup, vid=first["vid"], now=T0 + minutes(5))
    assert len(queries) == 0
    assert by_block(again) == by_block(first)
    assert activity.flush() == 2
    assert set(Lease.objects.values_list("last_activity_at", flat=True)) == {T0 + minutes(5)}


def test_a_block_no_rule_decides_keeps_its_original_address():
    setup = two_blocks()
    RuleCondition.objects.create(rule=setup.support_rule, field="utm_source", operator="equals", value="maps")
    answer = collect(setup)
    assert set(by_block(answer)) == {setup.block.pk}
    assert not Lease.objects.filter(pool=setup.support_pool).exists()


def test_an_exhausted_pool_keeps_only_its_own_block_original():
    setup = two_blocks()
    setup.support_pool.size = 1
    setup.support_pool.save()
    pool_fill(setup.support_pool)
    collect(setup, ip="198.51.100.1")
    answer = by_block(collect(setup, ip="198.51.100.2"))
    assert set(answer) == {setup.block.pk}


def test_a_letter_to_each_address_becomes_a_lead_with_its_block_and_the_visits_source():
    setup = two_blocks()
    answer = by_block(collect(setup))
    for block in (setup.block, setup.support):
        letter = ingest_raw(
            mailbox=setup.mailbox,
            raw=letter_bytes(to=answer[block.pk], subject=f"To {block.name}", sender=f"{block.pk}@client.test"),
            received_at=T0 + minutes(3),
        )
        lead = Lead.objects.get(letters=letter)
        assert lead.lease.block == block
        assert (lead.source, lead.campaign) == ("newsletter", "autumn")


# --- Conditions ---------------------------------------------------------------


def condition(setup, field, value, operator="equals"):
    RuleCondition.objects.create(rule=setup.support_rule, field=field, operator=operator, value=value)


def support_shown(setup, **options) -> bool:
    return setup.support.pk in by_block(collect(setup, **options))


@pytest.fixture
def geo_database(tmp_path, settings):
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City", languages=["en"])
    record = {
        "country": {"iso_code": "RU", "names": {"en": "Russia"}},
        "subdivisions": [{"names": {"en": "Tatarstan"}}],
        "city": {"names": {"en": "Kazan"}},
    }
    writer.insert_network(IPSet(["5.255.255.0/24"]), record)
    writer.insert_network(IPSet(["81.2.69.0/24"]), {"country": {"iso_code": "GB"}, "city": {"names": {"en": "London"}}})
    path = tmp_path / "city.mmdb"
    writer.to_db_file(str(path))
    settings.GEOIP_DATABASE = str(path)


def test_a_geo_condition_decides_by_the_visitors_country_region_and_city(geo_database):
    setup = two_blocks()
    condition(setup, "country", "ru")
    condition(setup, "region", "Tatarstan")
    condition(setup, "city", "kazan")
    assert support_shown(setup, ip="5.255.255.5")
    assert not support_shown(setup, ip="81.2.69.160")
    assert Session.objects.filter(region="Tatarstan", city="Kazan").count() == 1


def test_a_schedule_condition_decides_by_the_projects_time_zone():
    setup = two_blocks()
    setup.project.time_zone = "Europe/Moscow"
    setup.project.save()
    condition(setup, "schedule", "mon-fri 09:00-18:00")
    assert support_shown(setup, now=T0, ip="198.51.100.1")  # Wednesday 15:00 in Moscow
    assert not support_shown(setup, now=T0 + minutes(4 * 60), ip="198.51.100.2")  # 19:00
    assert not support_shown(setup, now=T0 + minutes(3 * 24 * 60), ip="198.51.100.3")  # Saturday


def test_a_schedule_over_midnight_holds_in_the_evening_and_the_next_morning():
    setup = two_blocks()
    condition(setup, "schedule", "fri 22:00-06:00")
    friday_night, saturday_morning = datetime(2025, 8, 1, 23, tzinfo=UTC), datetime(2025, 8, 2, 5, tzinfo=UTC)
    assert support_shown(setup, now=friday_night, ip="198.51.100.1")
    assert support_shown(setup, now=saturday_morning, ip="198.51.100.2")
    assert not support_shown(setup, now=datetime(2025, 8, 2, 23, tzinfo=UTC), ip="198.51.100.3")


def test_a_current_page_condition_decides_by_the_page_being_viewed_not_the_landing_page():
    setup = two_blocks()
    condition(setup, "page_url", "/support", operator="contains")
    first = collect(setup)
    assert setup.support.pk not in by_block(first)
    later = collect(setup, vid=first["vid"], url="https://shop.test/support/orders", now=T0 + minutes(1))
    assert setup.support.pk in by_block(later)
    assert Session.objects.get().landing_url == URL


def test_a_bad_schedule_is_refused_by_the_form():
    setup = two_blocks()
    with pytest.raises(ValidationError):
        RuleCondition(rule=setup.support_rule, field="schedule", value="someday 9-18").full_clean()
    with pytest.raises(ValidationError):
        RuleCondition(rule=setup.support_rule, field="schedule", value="mon-fri 09:00-25:00").full_clean()
