"""POST /api/v1/report: the install check's endpoint (the snippet reports a
page where a block's original address was not found)."""

import json
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from frontend_js import install_check
from frontend_js.install_check import page_of
from frontend_js.models import MissingBlockReport
from tests.factories import make_setup

pytestmark = pytest.mark.django_db

ORIGIN = "https://www.shop.test"


def report(body, origin=ORIGIN, client=None, **extra):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return (client or Client()).post(
        "/api/v1/report", data=data, content_type="text/plain;charset=UTF-8", HTTP_ORIGIN=origin, **extra
    )


def body(setup, url="https://www.shop.test/delivery?utm_source=x#map", missing=None):
    return {"site": setup.site.site_key, "url": url, "missing": missing or [setup.block.pk]}


def test_a_report_is_kept_per_page_without_query_or_fragment():
    setup = make_setup()
    response = report(body(setup))
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    row = MissingBlockReport.objects.get()
    assert (row.site_id, row.block_id, row.page_url, row.reports) == (
        setup.site.pk,
        setup.block.pk,
        "https://www.shop.test/delivery",
        1,
    )
    assert row.first_seen_at == row.last_seen_at


def test_the_same_page_is_counted_once_per_window_and_again_after_it():
    setup = make_setup()
    for _ in range(3):
        assert report(body(setup)).status_code == 204
    assert MissingBlockReport.objects.get().reports == 1
    report(body(setup, url="https://shop.test/other"))
    assert MissingBlockReport.objects.count() == 2

    MissingBlockReport.objects.update(last_seen_at=timezone.now() - timedelta(hours=1))
    cache.clear()  # the window has passed
    report(body(setup))
    row = MissingBlockReport.objects.get(page_url="https://www.shop.test/delivery")
    assert row.reports == 2
    assert row.last_seen_at > row.first_seen_at


def test_only_the_sites_own_blocks_pages_and_origins_count():
    setup, other = make_setup(), make_setup(name="Other")
    assert report(body(setup, missing=[other.block.pk])).status_code == 204
    assert report(body(setup), origin="https://evil.test").status_code == 403
    assert report(body(setup, url="https://evil.test/page")).status_code == 403
    assert report({**body(setup), "site": "nosuchsite"}).status_code == 404
    assert MissingBlockReport.objects.count() == 0


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        json.dumps([1, 2]),
        json.dumps({"url": "https://shop.test/", "missing": [1]}),
        json.dumps({"site": "x" * 40, "url": "https://shop.test/", "missing": [1]}),
        json.dumps({"site": "k", "url": "javascript:alert(1)", "missing": [1]}),
        json.dumps({"site": "k", "url": 5, "missing": [1]}),
        json.dumps({"site": "k", "url": "https://shop.test/", "missing": []}),
        json.dumps({"site": "k", "url": "https://shop.test/", "missing": [True]}),
        json.dumps({"site": "k", "url": "https://shop.test/", "missing": "1"}),
        json.dumps({"site": "k", "url": "https://shop.test/", "missing": list(range(51))}),
    ],
)
def test_a_malformed_report_is_a_400_with_the_reason(payload):
    response = report(payload)
    assert response.status_code == 400
    assert response.json()["error"]


def test_a_report_over_the_size_cap_is_a_413(settings):
    settings.SNIPPET_REPORT_MAX_BODY_BYTES = 100
    setup = make_setup()
    response = report(body(setup, url="https://shop.test/" + "a" * 200))
    assert response.status_code == 413
    assert MissingBlockReport.objects.count() == 0


def test_reports_are_rate_limited_per_client_ip(settings, frozen_rate_window):
    settings.SNIPPET_REPORT_RATE_LIMIT_PER_MINUTE = 2
    setup = make_setup()
    responses = [report(body(setup, url=f"https://shop.test/{n}")) for n in range(4)]
    assert [response.status_code for response in responses] == [204, 204, 429, 429]
    # The one limiter's wait: two a minute, so the next one in 30 seconds.
    assert responses[-1]["Retry-After"] == "30"
    assert MissingBlockReport.objects.count() == 2


def test_other_methods_answer_as_collect_does():
    client = Client()
    options = client.options("/api/v1/report", HTTP_ORIGIN=ORIGIN)
    assert options.status_code == 204
    assert options["Access-Control-Allow-Methods"] == "POST"
    assert client.get("/api/v1/report").status_code == 405


def test_an_unexpected_failure_is_a_503_never_a_500(monkeypatch):
    setup = make_setup()

    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(install_check, "record_report", broken)
    response = report(body(setup))
    assert response.status_code == 503
    assert response["Retry-After"] == "30"


def test_a_site_keeps_only_its_newest_pages(monkeypatch):
    monkeypatch.setattr(install_check, "PAGES_KEPT_PER_SITE", 3)
    setup = make_setup()
    for n in range(5):
        report(body(setup, url=f"https://shop.test/page-{n}"))
        MissingBlockReport.objects.filter(page_url=f"https://shop.test/page-{n}").update(
            last_seen_at=timezone.now() - timedelta(minutes=10 - n)
        )
    assert sorted(MissingBlockReport.objects.values_list("page_url", flat=True)) == [
        "https://shop.test/page-2",
        "https://shop.test/page-3",
        "https://shop.test/page-4",
    ]


@pytest.mark.parametrize(
    "url, page",
    [
        ("https://Shop.Test/a/b?x=1#y", "https://shop.test/a/b"),
        ("http://shop.test", "http://shop.test/"),
        ("https://shop.test:8443/p", "https://shop.test:8443/p"),
        ("ftp://shop.test/file", ""),
        ("https:///nohost", ""),
        ("http://[bad", ""),
    ],
)
def test_a_page_is_kept_by_its_address_without_query_and_fragment(url, page):
    assert page_of(url) == page
