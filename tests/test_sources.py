"""Sessions and sources: channel classification, referral exclusions, last
non-direct, devices and bots, geo from the IP (retention: test_retention.py)."""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import Client, override_settings
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from substitution.models import Lease
from tests.factories import make_setup, minutes
from tracker import geo, services
from tracker.channels import classify, last_non_direct, parse_domains
from tracker.devices import inspect_user_agent
from tracker.models import BotHit, Channel, Session, Visitor, validate_domain_list

T0 = datetime(2025, 7, 31, 12, 0, tzinfo=UTC)
ORIGIN = "http://shop.test"
VID = "visitor-0001"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
PAID = "https://shop.test/?utm_source=google&utm_medium=cpc&utm_campaign=sofas&gclid=G1"


def collect(setup, *, now=T0, user_agent=CHROME, ip="", **fields) -> dict:
    payload = {"v": 1, "site": setup.site.site_key, "url": "https://shop.test/", "ref": "", **fields}
    request = services.parse_request(json.dumps(payload).encode())
    return services.collect(request=request, origin=ORIGIN, user_agent=user_agent, now=now, ip=ip)


def sessions() -> list[Session]:
    return list(Session.objects.order_by("started_at"))


# --- Channels ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "ref", "expected"),
    [
        ("https://s.test/?gclid=G", "", ("paid", "google", "google")),
        ("https://s.test/?msclkid=M", "", ("paid", "bing", "bing")),
        ("https://s.test/?utm_source=yandex&utm_medium=cpc", "", ("paid", "yandex", "yandex")),
        ("https://s.test/?utm_source=partner&utm_medium=cpa", "", ("paid", "partner", "")),
        ("https://s.test/?utm_source=vk&utm_medium=cpc", "", ("paid_social", "vk", "")),
        ("https://s.test/?utm_source=fb&utm_medium=paid&fbclid=F", "", ("paid_social", "fb", "")),
        ("https://s.test/?ttclid=T", "", ("paid_social", "tiktok", "")),
        ("https://s.test/?fbclid=F", "https://l.facebook.com/", ("social", "l.facebook.com", "")),
        ("https://s.test/?fbclid=F", "", ("social", "facebook", "")),
        ("https://s.test/?utm_source=yandex&utm_medium=cpm", "", ("display", "yandex", "")),
        ("https://s.test/?utm_source=rtb&utm_medium=banner&gclid=G", "", ("display", "rtb", "")),
        ("https://s.test/?dclid=D", "", ("display", "google", "")),
        ("https://s.test/?utm_source=google&utm_medium=organic", "", ("organic", "google", "google")),
        ("https://s.test/", "https://www.bing.com/search?q=sofa", ("organic", "bing.com", "bing")),
        ("https://s.test/", "https://duckduckgo.com/", ("organic", "duckduckgo.com", "duckduckgo")),
        ("https://s.test/", "https://mail.google.com/mail/u/0/", ("email", "mail.google.com", "")),
        ("https://s.test/", "https://e.mail.ru/inbox/", ("email", "e.mail.ru", "")),
        ("https://s.test/", "https://go.mail.ru/search?q=x", ("organic", "go.mail.ru", "mail.ru")),
        ("https://s.test/", "https://zen.yandex.ru/a", ("social", "zen.yandex.ru", "")),
        ("https://s.test/", "https://www.google.co.uk/", ("organic", "google.co.uk", "google")),
        ("https://s.test/", "https://m.yandex.kz/search?text=x", ("organic", "m.yandex.kz", "yandex")),
        ("https://s.test/", "https://accounts.google.com/o/oauth2", ("referral", "accounts.google.com", "")),
        ("https://s.test/", "https://oauth.yandex.ru/authorize", ("referral", "oauth.yandex.ru", "")),
        ("https://s.test/", "https://google.evil.test/", ("referral", "google.evil.test", "")),
        ("https://s.test/", "https://t.co/abc", ("social", "t.co", "")),
        ("https://s.test/?utm_source=email", "", ("email", "email", "")),
        ("https://s.test/?utm_medium=referral", "", ("referral", "", "")),
        ("https://s.test/", "https://forum.test/t/1", ("referral", "forum.test", "")),
        ("https://s.test/", "", ("direct", "", "")),
    ],
)
def test_it_classifies_paid_and_organic_search_paid_social_social_display_email_referral_and_direct(url, ref, expected):
    source = classify(url, ref, own_host="s.test")
    assert (source.channel, source.source, source.search_engine) == expected


def test_the_keyword_comes_from_utm_term_else_from_the_search_engines_referrer():
    assert classify("https://s.test/", "https://yandex.ru/search/?text=red+sofa").keyword == "red sofa"
    assert classify("https://s.test/", "https://search.brave.com/search?q=blue").keyword == "blue"
    tagged = classify("https://s.test/?utm_term=bought", "https://yandex.ru/search/?text=searched")
    assert tagged.keyword == "bought"
    assert classify("https://s.test/", "https://forum.test/?q=not-a-search").keyword == ""


def test_every_click_id_is_kept_with_the_visit():
    url = "https://s.test/?gclid=G&yclid=Y&fbclid=F&msclkid=M&ttclid=T&wbraid=W&gbraid=B&other=1"
    assert classify(url, "").click_ids == {
        "gclid": "G",
        "yclid": "Y",
        "fbclid": "F",
        "msclkid": "M",
        "ttclid": "T",
        "wbraid": "W",
        "gbraid": "B",
    }


def test_a_page_classified_again_gives_each_caller_its_own_tags():
    url = "https://s.test/?utm_source=news&utm_campaign=spring&gclid=G1"
    first = classify(url, "", own_host="s.test")
    first.utm["utm_campaign"] = "changed"
    first.click_ids.clear()
    again = classify(url, "", own_host="s.test")
    assert again.utm["utm_campaign"] == "spring" and again.click_ids == {"gclid": "G1"}
    assert (again.channel, again.source) == (Channel.PAID, "news")


@pytest.mark.parametrize(
    "ref",
    ["https://www.paypal.com/checkout", "https://checkout.stripe.com/pay/x", "https://id.vk.com/authorize"],
)
def test_a_referrer_on_the_exclusion_list_counts_as_no_referrer(ref):
    excluded = parse_domains("paypal.com\nstripe.com\nid.vk.com")
    assert classify("https://s.test/", ref).channel in (Channel.REFERRAL, Channel.SOCIAL)
    source = classify("https://s.test/", ref, excluded=excluded)
    assert (source.channel, source.source) == (Channel.DIRECT, "")
    # UTM tags still count: only the referrer is ignored.
    tagged = classify("https://s.test/?utm_source=news&utm_medium=email", ref, excluded=excluded)
    assert tagged.channel == Channel.EMAIL


def test_the_exclusion_list_matches_whole_domains_not_substrings():
    excluded = parse_domains("paypal.com")
    assert classify("https://s.test/", "https://mypaypal.com/", excluded=excluded).channel == Channel.REFERRAL
    assert classify("https://s.test/", "https://paypal.com.evil.test/", excluded=excluded).channel == "referral"


def test_the_exclusion_list_is_read_leniently_one_domain_a_line():
    text = "PayPal.com  # payments\n\nhttps://www.checkout.stripe.com/pay\n*.yoomoney.ru, id.vk.com\nпример.рф\n"
    assert parse_domains(text) == (
        "paypal.com",
        "checkout.stripe.com",
        "yoomoney.ru",
        "id.vk.com",
        "xn--e1afmkfd.xn--p1ai",
    )


def test_the_exclusion_list_refuses_what_is_not_a_domain():
    validate_domain_list("paypal.com\n# a comment\nsub.example.co.uk")
    with pytest.raises(ValidationError):
        validate_domain_list("paypal.com\nnot a domain!")


# --- Last non-direct (the pure rule) ------------------------------------------------


@dataclass
class Earlier:
    channel: str = Channel.PAID
    source: str = "google"
    keyword: str = "sofa"
    search_engine: str = "google"
    utm_source: str = "google"
    utm_medium: str = "cpc"
    utm_campaign: str = "sofas"
    utm_term: str = "sofa"
    utm_content: str = ""
    click_ids: dict = None
    started_at: datetime = T0
    source_inherited: bool = False


DIRECT = classify("https://s.test/", "")


def test_a_direct_return_within_the_period_keeps_the_earlier_source():
    kept = last_non_direct(DIRECT, Earlier(click_ids={"gclid": "G1"}), T0 + timedelta(days=30), 30)
    assert kept.inherited
    assert (kept.channel, kept.source, kept.keyword, kept.search_engine) == ("paid", "google", "sofa", "google")
    assert kept.utm["utm_campaign"] == "sofas"
    assert kept.click_ids == {"gclid": "G1"}


@pytest.mark.parametrize(
    ("earlier", "days", "after"),
    [
        (Earlier(), 30, timedelta(days=30, seconds=1)),
        (Earlier(), 0, timedelta(minutes=40)),
        (None, 30, timedelta(days=1)),
        (Earlier(channel=Channel.DIRECT, source=""), 30, timedelta(days=1)),
        (Earlier(source_inherited=True), 30, timedelta(days=1)),
    ],
    ids=["past-the-period", "turned-off", "no-earlier-session", "earlier-was-direct", "earlier-was-itself-inherited"],
)
def test_a_direct_return_stays_direct(earlier, days, after):
    result = last_non_direct(DIRECT, earlier, T0 + after, days)
    assert (result.channel, result.inherited) == (Channel.DIRECT, False)


def test_a_visit_with_its_own_source_never_inherits():
    organic = classify("https://s.test/", "https://www.google.com/")
    assert last_non_direct(organic, Earlier(), T0 + timedelta(days=1), 30) is organic


# --- Devices and bots ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (CHROME, ("desktop", "Windows", "Chrome", False)),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.5 Safari/605.1.15",
            ("desktop", "Mac OS X", "Safari", False),
        ),
        (IPHONE, ("mobile", "iOS", "Mobile Safari", False)),
        (
            "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/16.6 Mobile/15E148 Safari/604.1",
            ("tablet", "iOS", "Mobile Safari", False),
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0.0.0 Safari/537.36",
            ("tablet", "Android", "Chrome", False),
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0.0.0 Mobile Safari/537.36",
            ("mobile", "Android", "Chrome Mobile", False),
        ),
        (GOOGLEBOT, ("bot", "", "Googlebot", True)),
        ("Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", ("bot", "", "YandexBot", True)),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/126.0.0.0 "
            "Safari/537.36",
            ("bot", "Linux", "HeadlessChrome", True),
        ),
        ("curl/8.5.0", ("bot", "", "curl", True)),
        ("Java/17.0.1", ("bot", "", "Java", True)),
        ("", ("", "", "", False)),
    ],
)
def test_it_reads_device_type_os_and_browser_and_knows_bots(user_agent, expected):
    device = inspect_user_agent(user_agent)
    assert (device.device_type, device.os, device.browser, device.is_bot) == expected


def test_it_keeps_major_versions_of_os_and_browser():
    device = inspect_user_agent(IPHONE)
    assert (device.os_version, device.browser_version) == ("17.5", "17")


# --- Geo -------------------------------------------------------------------------------


def write_geo_database(path, cities: dict):
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City", languages=["en", "ru"])
    for network, (country, names) in cities.items():
        record = {"country": {"iso_code": country, "names": {"en": country}}}
        if names:
            record["city"] = {"names": names}
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


@pytest.fixture
def geo_database(tmp_path, settings):
    path = write_geo_database(
        tmp_path / "city.mmdb",
        {
            "81.2.69.0/24": ("GB", {"en": "London", "ru": "Лондон"}),
            "2a02:6b8::/32": ("RU", {"ru": "Москва"}),
            "5.255.255.0/24": ("RU", {}),
        },
    )
    settings.GEOIP_DATABASE = str(path)
    return path


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("81.2.69.160", ("GB", "London")),
        ("::ffff:81.2.69.1", ("GB", "London")),
        ("2a02:6b8:a::a", ("RU", "Москва")),
        ("5.255.255.5", ("RU", "")),
        ("8.8.8.8", ("", "")),
        ("not an ip", ("", "")),
        ("", ("", "")),
    ],
)
def test_geo_finds_country_and_city_of_the_ip_in_the_mmdb_file(geo_database, ip, expected):
    place = geo.locate(ip)
    assert (place.country, place.city) == expected


@pytest.mark.parametrize("setting", ["", "/nonexistent/GeoLite2-City.mmdb", "GARBAGE"])
def test_geo_without_a_usable_database_answers_nothing_and_never_fails(tmp_path, settings, setting):
    if setting == "GARBAGE":
        setting = tmp_path / "broken.mmdb"
        setting.write_bytes(b"this is not a maxmind database" * 10)
    settings.GEOIP_DATABASE = str(setting)
    assert geo.locate("81.2.69.160") == geo.Geo("", "")


def test_geo_reads_a_replaced_database_file(geo_database):
    assert geo.locate("81.2.69.160").city == "London"
    write_geo_database(geo_database, {"81.2.69.0/24": ("GB", {"en": "Croydon"})})
    assert geo.locate("81.2.69.160").city == "Croydon"


@pytest.mark.parametrize(
    ("ip", "truncated"),
    [
        ("81.2.69.160", "81.2.69.0"),
        ("::ffff:81.2.69.160", "81.2.69.0"),
        ("2a02:6b8:a:b:c:d:e:f", "2a02:6b8:a::"),
        ("nonsense", None),
        ("", None),
    ],
)
def test_the_ip_is_kept_only_truncated(ip, truncated):
    assert geo.truncate_ip(ip) == truncated


# --- What a session records ------------------------------------------------------------


@pytest.mark.django_db
def test_a_new_session_records_device_search_engine_keyword_geo_and_the_truncated_ip(geo_database):
    setup = make_setup()
    collect(setup, vid=VID, ref="https://yandex.ru/search/?text=sofa", user_agent=IPHONE, ip="81.2.69.160")
    session = Session.objects.get()
    assert (session.channel, session.search_engine, session.keyword) == ("organic", "yandex", "sofa")
    assert (session.device_type, session.os, session.os_version) == ("mobile", "iOS", "17.5")
    assert (session.browser, session.browser_version) == ("Mobile Safari", "17")
    assert (session.country, session.city, session.ip_truncated) == ("GB", "London", "81.2.69.0")
    assert (session.returning_visitor, session.source_inherited) == (False, False)


@pytest.mark.django_db
def test_a_second_session_of_the_visitor_is_a_returning_visit():
    setup = make_setup()
    collect(setup, vid=VID)
    collect(setup, vid=VID, now=T0 + minutes(10))
    collect(setup, vid=VID, now=T0 + minutes(60))
    collect(setup, vid="visitor-0002", now=T0 + minutes(61))
    assert [(s.visitor.vid, s.returning_visitor) for s in sessions()] == [
        (VID, False),
        (VID, True),
        ("visitor-0002", False),
    ]


@pytest.mark.django_db
def test_a_known_visitor_whose_old_sessions_were_deleted_still_returns():
    setup = make_setup()
    Visitor.objects.create(site=setup.site, vid=VID, created_at=T0 - timedelta(days=200), last_seen_at=T0)
    collect(setup, vid=VID)
    assert Session.objects.get().returning_visitor


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("proxies", "expected"),
    [(0, "10.9.8.0"), (1, "81.2.69.0")],
)
def test_the_view_takes_the_client_ip_from_x_forwarded_for_only_behind_a_trusted_proxy(geo_database, proxies, expected):
    setup = make_setup()
    payload = json.dumps({"v": 1, "site": setup.site.site_key, "vid": VID, "url": "https://shop.test/"})
    with override_settings(TRUSTED_PROXY_COUNT=proxies):
        response = Client().post(
            "/api/v1/collect",
            data=payload,
            content_type="text/plain",
            HTTP_ORIGIN=ORIGIN,
            HTTP_USER_AGENT=CHROME,
            REMOTE_ADDR="10.9.8.7",
            HTTP_X_FORWARDED_FOR="81.2.69.160",
        )
    assert response.status_code == 200
    session = Session.objects.get()
    assert session.ip_truncated == expected
    assert session.country == ("GB" if proxies else "")


@pytest.mark.django_db
def test_a_direct_return_keeps_the_earlier_paid_source_and_says_so():
    setup = make_setup()
    collect(setup, vid=VID, url=PAID)
    collect(setup, vid=VID, now=T0 + timedelta(days=3))
    first, second = sessions()
    assert (second.channel, second.source, second.utm_campaign, second.click_ids) == (
        "paid",
        "google",
        "sofas",
        {"gclid": "G1"},
    )
    assert (second.source_inherited, first.source_inherited) == (True, False)
    assert (second.landing_url, second.referrer) == ("https://shop.test/", "")


@pytest.mark.django_db
def test_the_period_counts_from_the_visit_that_had_the_source_not_from_the_last_direct_one():
    setup = make_setup()
    collect(setup, vid=VID, url=PAID)
    collect(setup, vid=VID, now=T0 + timedelta(days=20))
    collect(setup, vid=VID, now=T0 + timedelta(days=25))
    collect(setup, vid=VID, now=T0 + timedelta(days=31))
    assert [(s.channel, s.source_inherited) for s in sessions()] == [
        ("paid", False),
        ("paid", True),
        ("paid", True),
        ("direct", False),
    ]


@pytest.mark.django_db
def test_the_last_non_direct_period_is_set_per_site_and_zero_turns_it_off():
    setup = make_setup()
    setup.site.last_non_direct_days = 0
    setup.site.save()
    collect(setup, vid=VID, url=PAID)
    collect(setup, vid=VID, now=T0 + timedelta(hours=2))
    assert [s.channel for s in sessions()] == ["paid", "direct"]


@pytest.mark.django_db
def test_a_return_from_an_excluded_payment_gateway_neither_starts_a_session_nor_becomes_the_source():
    setup = make_setup()
    setup.site.referral_exclusions = "paypal.com"
    setup.site.save()
    collect(setup, vid=VID, ref="https://www.google.com/")
    collect(setup, vid=VID, ref="https://www.paypal.com/checkout", now=T0 + minutes(5))
    assert len(sessions()) == 1
    assert Session.objects.get().page_views == 2
    collect(setup, vid=VID, ref="https://www.paypal.com/checkout", now=T0 + minutes(60))
    assert [(s.channel, s.source, s.source_inherited) for s in sessions()] == [
        ("organic", "google.com", False),
        ("organic", "google.com", True),
    ]


@pytest.mark.django_db
def test_a_referrer_on_another_of_the_sites_domains_is_no_source():
    setup = make_setup(domains=("shop.test", "shop-blog.test"))
    collect(setup, vid=VID, ref="https://shop-blog.test/post")
    assert (Session.objects.get().channel, Session.objects.get().source) == ("direct", "")


# --- Bots ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_known_bot_gets_the_original_address_no_lease_no_visitor_and_is_counted():
    setup = make_setup()
    answer = collect(setup, vid=VID, user_agent=GOOGLEBOT)
    assert answer == {"vid": None, "subs": [], "exp": None, "hb": 60}
    collect(setup, vid=VID, user_agent=GOOGLEBOT, now=T0 + minutes(1))
    collect(setup, user_agent="curl/8.5.0", now=T0 + timedelta(days=1))
    assert not Lease.objects.exists()
    assert not Visitor.objects.exists()
    assert list(BotHit.objects.order_by("day").values_list("site", "day", "count")) == [
        (setup.site.pk, T0.date(), 2),
        (setup.site.pk, T0.date() + timedelta(days=1), 1),
    ]
    assert collect(setup, vid=VID, now=T0 + minutes(2))["subs"]  # a browser still gets its address


@pytest.mark.django_db
def test_the_collect_view_reads_the_bot_from_the_user_agent_header():
    setup = make_setup()
    payload = json.dumps({"v": 1, "site": setup.site.site_key, "vid": VID})
    response = Client().post(
        "/api/v1/collect", data=payload, content_type="text/plain", HTTP_ORIGIN=ORIGIN, HTTP_USER_AGENT=GOOGLEBOT
    )
    assert response.status_code == 200
    assert response.json()["subs"] == []
    assert BotHit.objects.get().count == 1


# --- Admin -------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_shows_the_new_session_fields_and_site_settings(admin_client):
    setup = make_setup()
    collect(setup, vid=VID, url=PAID)
    collect(setup, vid=VID, now=T0 + timedelta(days=1))
    session = Session.objects.filter(source_inherited=True).get()
    page = admin_client.get(f"/admin/tracker/session/{session.pk}/change/").content.decode()
    assert "Source inherited" in page and "Windows" in page and "Chrome" in page
    site_page = admin_client.get(f"/admin/tracker/site/{setup.site.pk}/change/").content.decode()
    assert "referral_exclusions" in site_page and "last_non_direct_days" in site_page
    response = admin_client.post(
        f"/admin/tracker/site/{setup.site.pk}/change/",
        {
            "project": setup.project.pk,
            "name": setup.site.name,
            "original_email": setup.site.original_email,
            "active": "on",
            "referral_exclusions": "paypal.com\nthis is not a domain",
            "last_non_direct_days": "30",
            "domains-TOTAL_FORMS": "0",
            "domains-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200  # the form again, with the error
    assert "Not a domain" in response.content.decode()
    BotHit.objects.create(site=setup.site, day=T0.date(), count=7)
    assert admin_client.get("/admin/tracker/bothit/").status_code == 200
