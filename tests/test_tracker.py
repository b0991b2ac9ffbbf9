"""The collect endpoint, its classification of visits, and the served snippet."""

import json
from datetime import UTC, datetime

import pytest
from django.test import Client, RequestFactory, override_settings

from lib.http import client_ip
from substitution.models import Lease
from tests.factories import make_setup, minutes
from tests.route import RouteClient
from tracker import services
from tracker.channels import classify
from tracker.models import Channel, Session, Visitor

T0 = datetime(2025, 7, 31, 12, 0, tzinfo=UTC)
ORIGIN = "http://shop.test"
VID = "visitor-0001"


def body(**fields) -> bytes:
    return json.dumps({"v": 1, "url": "https://shop.test/", "ref": "", **fields}).encode()


def collect(setup, *, now=T0, origin=ORIGIN, **fields) -> dict:
    request = services.parse_request(body(site=setup.site.site_key, **fields))
    return services.collect(request=request, origin=origin, user_agent="Mozilla/5.0", now=now)


def post(client, payload, origin=ORIGIN, **extra):
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return client.post("/api/v1/collect", data=data, content_type="text/plain", HTTP_ORIGIN=origin, **extra)


# Channels


@pytest.mark.parametrize(
    ("url", "ref", "expected"),
    [
        ("https://shop.test/?utm_source=news&utm_medium=email&utm_campaign=autumn", "", ("email", "news", "")),
        ("https://shop.test/?utm_source=yandex&utm_medium=cpc&utm_term=buy+sofa", "", ("paid", "yandex", "buy sofa")),
        ("https://shop.test/?gclid=abc123", "", ("paid", "google", "")),
        ("https://shop.test/?yclid=42", "", ("paid", "yandex", "")),
        ("https://shop.test/", "https://www.google.com/search?q=red+sofa", ("organic", "google.com", "red sofa")),
        (
            "https://shop.test/",
            "https://yandex.ru/search/?text=%D0%B4%D0%B8%D0%B2%D0%B0%D0%BD",
            ("organic", "yandex.ru", "диван"),
        ),
        ("https://shop.test/", "https://www.facebook.com/", ("social", "facebook.com", "")),
        ("https://shop.test/", "https://m.vk.com/wall-1", ("social", "m.vk.com", "")),
        ("https://shop.test/", "https://blog.example.org/post/1", ("referral", "blog.example.org", "")),
        ("https://shop.test/", "https://www.netflix.com/", ("referral", "netflix.com", "")),
        ("https://shop.test/", "https://olya.ru/", ("referral", "olya.ru", "")),
        ("https://shop.test/", "", ("direct", "", "")),
        ("https://shop.test/b", "https://shop.test/a", ("direct", "", "")),
        ("https://shop.test/b", "https://www.shop.test/a", ("direct", "", "")),
    ],
    ids=[
        "utm-email-is-email",
        "utm-cpc-is-paid-with-term",
        "gclid-is-paid-from-google",
        "yclid-is-paid-from-yandex",
        "google-referrer-is-organic-with-q",
        "yandex-referrer-is-organic-with-text",
        "facebook-referrer-is-social",
        "vk-subdomain-is-social",
        "other-site-is-referral",
        "netflix-is-not-x-com",
        "olya-ru-is-not-ya-ru",
        "nothing-is-direct",
        "internal-referrer-is-ignored",
        "internal-www-referrer-is-ignored",
    ],
)
def test_it_classifies_the_channel_source_and_keyword_of_a_visit(url, ref, expected):
    source = classify(url, ref, own_host="shop.test")
    assert (source.channel, source.source, source.keyword) == expected


def test_classify_keeps_utm_tags_and_click_ids():
    source = classify("https://shop.test/?utm_source=fb&utm_campaign=x&fbclid=F1&gclid=G1", "")
    assert source.utm == {
        "utm_source": "fb",
        "utm_medium": "",
        "utm_campaign": "x",
        "utm_term": "",
        "utm_content": "",
    }
    assert source.click_ids == {"gclid": "G1", "fbclid": "F1"}


# parse_request


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (b"not json", 400, "JSON"),
        (b"\xff\xfe", 400, "JSON"),
        (b"[1, 2]", 400, "object"),
        (json.dumps({"v": 2, "site": "k"}).encode(), 400, "version"),
        (json.dumps({"v": True, "site": "k"}).encode(), 400, "version"),
        (json.dumps({"v": 1}).encode(), 400, "site"),
        (json.dumps({"v": 1, "site": "k" * 33}).encode(), 400, "site"),
        (json.dumps({"v": 1, "site": "k", "vid": "short"}).encode(), 400, "vid"),
        (json.dumps({"v": 1, "site": "k", "vid": "has spaces in it"}).encode(), 400, "vid"),
        (json.dumps({"v": 1, "site": "k", "vid": "abcdefgh\n"}).encode(), 400, "vid"),
        (json.dumps({"v": 1, "site": "k", "url": "javascript:alert(1)"}).encode(), 400, "url"),
        (json.dumps({"v": 1, "site": "k", "ref": 5}).encode(), 400, "ref"),
        (json.dumps({"v": 1, "site": "k", "consent": "yes"}).encode(), 400, "consent"),
        (json.dumps({"v": 1, "site": "k", "ref": "x" * 9000}).encode(), 413, "too large"),
    ],
)
def test_parse_request_refuses_a_malformed_body_with_the_reason(raw, status, message):
    with pytest.raises(services.CollectError) as caught:
        services.parse_request(raw)
    assert caught.value.status == status
    assert message in caught.value.message


def test_parse_request_reads_a_valid_body_with_defaults():
    parsed = services.parse_request(json.dumps({"v": 1, "site": "key", "vid": None, "url": "https://a.test/"}).encode())
    assert (parsed.site_key, parsed.vid, parsed.url, parsed.consent, parsed.heartbeat) == (
        "key",
        None,
        "https://a.test/",
        True,
        False,
    )


# The collect service


@pytest.mark.django_db
def test_collect_refuses_an_unknown_site_key():
    make_setup()
    request = services.parse_request(body(site="nosuchkey"))
    with pytest.raises(services.CollectError) as caught:
        services.collect(request=request, origin=ORIGIN, user_agent="", now=T0)
    assert caught.value.status == 404


@pytest.mark.django_db
@pytest.mark.parametrize("origin", ["http://evil.test", "http://evilshop.test", "http://shop.test.evil.test", ""])
def test_collect_refuses_an_origin_outside_the_site_domains(origin):
    setup = make_setup()
    with pytest.raises(services.CollectError) as caught:
        collect(setup, origin=origin)
    assert caught.value.status == 403
    assert not Visitor.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("origin", ["https://www.shop.test", "https://blog.shop.test", "http://127.0.0.1:8000"])
def test_collect_accepts_the_site_domains_and_their_subdomains(origin):
    setup = make_setup()
    assert collect(setup, origin=origin)["vid"]


@pytest.mark.django_db
def test_collect_without_consent_keeps_no_visitor_and_no_session():
    setup = make_setup()
    answer = collect(setup, vid=VID, consent=False)
    assert answer == {"vid": None, "subs": [], "exp": None, "hb": 60}
    assert not Visitor.objects.exists()
    assert not Session.objects.exists()
    assert not Lease.objects.exists()


@pytest.mark.django_db
def test_a_new_visitor_gets_an_id_an_address_and_a_session_with_the_utm_tags():
    setup = make_setup()
    url = "https://shop.test/?utm_source=newsletter&utm_medium=email&utm_campaign=autumn&utm_content=top"
    answer = collect(setup, url=url, screen="1920x1080", lang="ru-RU", ga="GA1.1.5.6")

    visitor = Visitor.objects.get(vid=answer["vid"])
    lease = Lease.objects.get(visitor=visitor)
    assert answer["subs"] == [{"block": setup.block.pk, "email": lease.address.email}]
    assert answer["exp"] == int((T0 + minutes(30)).timestamp())
    session = visitor.sessions.get()
    assert (session.utm_source, session.utm_medium, session.utm_campaign, session.utm_content) == (
        "newsletter",
        "email",
        "autumn",
        "top",
    )
    assert (session.channel, session.source, session.landing_url) == (Channel.EMAIL, "newsletter", url)
    assert (session.page_views, session.last_urls, session.screen, session.lang) == (1, [url], "1920x1080", "ru-RU")
    assert (session.ga_client_id, session.device_type) == ("GA1.1.5.6", "desktop")


@pytest.mark.django_db
def test_the_same_visitor_within_30_minutes_stays_in_one_session_counting_page_views():
    setup = make_setup()
    urls = [f"https://shop.test/page/{n}" for n in range(12)]
    first = collect(setup, vid=VID, url=urls[0])
    for n, url in enumerate(urls[1:], start=1):
        again = collect(setup, vid=VID, url=url, ref=urls[n - 1], now=T0 + minutes(2 * n))
        assert again["subs"] == first["subs"]
    session = Session.objects.get()
    assert session.page_views == 12
    assert session.last_urls == urls[-10:]
    assert session.last_seen_at == T0 + minutes(22)
    assert Visitor.objects.get().vid == VID


@pytest.mark.django_db
def test_after_30_minutes_without_activity_a_new_session_starts():
    setup = make_setup()
    collect(setup, vid=VID, now=T0)
    collect(setup, vid=VID, now=T0 + minutes(29))
    collect(setup, vid=VID, now=T0 + minutes(58))
    assert Session.objects.count() == 1
    collect(setup, vid=VID, now=T0 + minutes(88))  # exactly 30 minutes since the last page view
    sessions = list(Session.objects.order_by("started_at"))
    assert [s.started_at for s in sessions] == [T0, T0 + minutes(88)]
    assert [s.page_views for s in sessions] == [3, 1]


@pytest.mark.django_db
def test_arriving_from_a_new_campaign_starts_a_new_session():
    setup = make_setup()
    collect(setup, vid=VID, url="https://shop.test/?utm_source=news&utm_medium=email&utm_campaign=a")
    collect(
        setup, vid=VID, url="https://shop.test/?utm_source=news&utm_medium=email&utm_campaign=a", now=T0 + minutes(1)
    )
    assert Session.objects.count() == 1
    collect(
        setup, vid=VID, url="https://shop.test/?utm_source=news&utm_medium=email&utm_campaign=b", now=T0 + minutes(2)
    )
    collect(setup, vid=VID, url="https://shop.test/", ref="https://www.google.com/", now=T0 + minutes(3))
    sessions = list(Session.objects.order_by("started_at"))
    assert [(s.channel, s.utm_campaign) for s in sessions] == [("email", "a"), ("email", "b"), ("organic", "")]


@pytest.mark.django_db
def test_a_heartbeat_keeps_the_session_and_lease_alive_without_counting_a_page_view():
    setup = make_setup()
    first = collect(setup, vid=VID, url="https://shop.test/?utm_source=x&utm_medium=cpc")
    beat = collect(setup, vid=VID, url="https://shop.test/?utm_source=y&utm_medium=cpc", hb=True, now=T0 + minutes(25))
    session = Session.objects.get()
    assert (session.page_views, session.last_seen_at) == (1, T0 + minutes(25))
    assert beat["subs"] == first["subs"]
    assert beat["exp"] == int((T0 + minutes(55)).timestamp())
    assert Lease.objects.get().expires_at == T0 + minutes(55)


# The collect view


@pytest.mark.django_db
def test_the_collect_view_answers_the_snippet_with_cors_for_its_origin():
    setup = make_setup()
    response = post(Client(), {"v": 1, "site": setup.site.site_key, "vid": None, "url": "https://shop.test/"})
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert response["Cache-Control"] == "no-store"
    answer = response.json()
    assert set(answer) == {"vid", "subs", "exp", "hb"}
    assert answer["subs"][0]["block"] == setup.block.pk
    assert Visitor.objects.filter(vid=answer["vid"]).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "origin", "status"),
    [
        ("{not json", ORIGIN, 400),
        ({"v": 1, "site": "KEY"}, "http://evil.test", 403),
        ({"v": 1, "site": "unknownkey"}, ORIGIN, 404),
        ({"v": 1, "site": "KEY", "ref": "x" * 10_000}, ORIGIN, 413),
    ],
)
def test_the_collect_view_answers_errors_as_json(payload, origin, status):
    setup = make_setup()
    if isinstance(payload, dict) and payload["site"] == "KEY":
        payload["site"] = setup.site.site_key
    response = post(Client(), payload, origin=origin)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]
    assert response["Access-Control-Allow-Origin"] == origin


def test_the_collect_view_refuses_other_methods():
    response = Client().get("/api/v1/collect", HTTP_ORIGIN=ORIGIN)
    assert response.status_code == 405
    assert response.json()["error"]


@pytest.mark.django_db
@override_settings(COLLECT_RATE_LIMIT_PER_MINUTE=3)
def test_the_collect_view_answers_429_past_the_rate_limit_per_client_ip(frozen_rate_window, fresh_redis):
    setup = make_setup()
    payload = {"v": 1, "site": setup.site.site_key, "vid": VID}
    client = Client()
    statuses = [post(client, payload).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = post(client, payload)
    assert limited["Retry-After"] == "20"  # 3 a minute: the next one 20 s after the burst
    assert limited.json()["error"]
    assert post(client, payload, REMOTE_ADDR="10.0.0.2").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("client_class", [Client, RouteClient], ids=["django", "wsgi-route"])
def test_an_unexpected_failure_in_collect_answers_503_not_500(monkeypatch, client_class):
    setup = make_setup()

    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services, "collect", broken)
    client = Client(raise_request_exception=False) if client_class is Client else RouteClient()
    response = post(client, {"v": 1, "site": setup.site.site_key})
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response.json() == {"error": "Temporarily unavailable"}


# client_ip


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "6.6.6.6", "10.0.0.1"),
        (1, "", "10.0.0.1"),
        (1, "6.6.6.6, 1.2.3.4", "1.2.3.4"),
        (2, "6.6.6.6, 1.2.3.4, 172.16.0.9", "1.2.3.4"),
        (3, "1.2.3.4, 172.16.0.9", "1.2.3.4"),
    ],
)
def test_client_ip_believes_only_as_many_forwarded_entries_as_trusted_proxies(proxies, forwarded, expected):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", **extra)
    with override_settings(TRUSTED_PROXY_COUNT=proxies):
        assert client_ip(request) == expected


# The snippet


@pytest.mark.django_db
def test_the_snippet_of_an_unknown_site_key_is_a_404_script():
    response = Client().get("/s/nosuchkey.js")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/javascript")


@pytest.mark.django_db
def test_the_snippet_carries_the_site_key_collect_url_and_block_ids():
    setup = make_setup()
    response = Client().get(f"/s/{setup.site.site_key}.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    text = response.content.decode()
    assert "/*CONFIG*/" not in text and "__site__" not in text
    # The settings are rendered in as literals (frontend_js/services.py).
    assert f'"{setup.site.site_key}"' in text
    assert '"http://testserver/api/v1/collect"' in text
    # Each block with its original address (the site's when the block has none).
    assert f'[{{id:{setup.block.pk},e:"info@shop.test"}}]' in text


@pytest.mark.django_db
def test_an_inactive_site_gets_no_snippet():
    setup = make_setup()
    setup.site.active = False
    setup.site.save()
    assert Client().get(f"/s/{setup.site.site_key}.js").status_code == 404
