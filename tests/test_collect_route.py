"""The WSGI route that answers collect before Django (tracker.wsgi): the same
answers and headers as the Django view, and what Django's middleware and
request cycle did around it (Host check, HTTPS redirect and HSTS, trusted
proxies, database connections)."""

import json

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from tests.factories import make_setup
from tests.route import RouteClient
from tracker.models import Visitor
from tracker.wsgi import CollectRoute

ORIGIN = "https://shop.test"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"


pytestmark = pytest.mark.usefixtures("fresh_redis")


def payload(site, vid=None, **fields):
    return json.dumps({"v": 1, "site": site.site_key, "vid": vid, "url": "https://shop.test/", **fields})


def post(client, data, origin=ORIGIN, **extra):
    extra.setdefault("HTTP_USER_AGENT", BROWSER)
    return client.post("/api/v1/collect", data, content_type="text/plain", HTTP_ORIGIN=origin, **extra)


def headers_of(response) -> dict:
    return {name.lower(): value for name, value in response.headers.items() if name.lower() != "content-length"}


CASES = {
    "new visitor": lambda c, site, ip: post(c, payload(site), REMOTE_ADDR=ip),
    "returning visitor": lambda c, site, ip: post(c, payload(site, vid=f"visitor-{ip}"), REMOTE_ADDR=ip),
    "not json": lambda c, site, ip: post(c, "{not json", REMOTE_ADDR=ip),
    "foreign origin": lambda c, site, ip: post(c, payload(site), origin="https://evil.test", REMOTE_ADDR=ip),
    "unknown site": lambda c, site, ip: post(c, json.dumps({"v": 1, "site": "nosuchkey"}), REMOTE_ADDR=ip),
    "body too large": lambda c, site, ip: post(c, payload(site, ref="x" * 9000), REMOTE_ADDR=ip),
    "forged origin": lambda c, site, ip: post(c, payload(site), origin="https://shop.test\nX: 1", REMOTE_ADDR=ip),
    "GET": lambda c, site, ip: c.get("/api/v1/collect", HTTP_ORIGIN=ORIGIN, REMOTE_ADDR=ip),
    "preflight": lambda c, site, ip: c.options("/api/v1/collect", HTTP_ORIGIN=ORIGIN, REMOTE_ADDR=ip),
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES)
def test_the_route_answers_as_the_django_view_does(case):
    setup = make_setup()
    through_django = CASES[case](Client(), setup.site, "10.0.0.1")
    through_route = CASES[case](RouteClient(), setup.site, "10.0.0.2")
    assert through_route.status_code == through_django.status_code
    assert headers_of(through_route) == headers_of(through_django)
    if through_django.content:
        django_answer, route_answer = through_django.json(), through_route.json()
        if "vid" in django_answer:
            assert route_answer["vid"] and route_answer["vid"] != django_answer["vid"]
            django_answer.pop("vid"), route_answer.pop("vid")
            assert route_answer.pop("exp") == pytest.approx(django_answer.pop("exp"), abs=5)
            assert len(route_answer["subs"]) == len(django_answer["subs"]) == 1
            for answer in (route_answer, django_answer):
                answer["subs"][0].pop("email")  # each visitor its own address
        assert route_answer == django_answer
    else:
        assert through_route.content == b""


@pytest.mark.django_db
@override_settings(COLLECT_RATE_LIMIT_PER_MINUTE=2)
def test_the_route_answers_429_with_retry_after_as_the_view_does(frozen_rate_window):
    setup = make_setup()
    for client, ip in ((Client(), "10.0.0.1"), (RouteClient(), "10.0.0.2")):
        statuses = [post(client, payload(setup.site), REMOTE_ADDR=ip).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = post(client, payload(setup.site), REMOTE_ADDR=ip)
        assert limited.status_code == 429
        assert limited["Retry-After"] == "30"  # 2 a minute: the next one 30 s after the burst
        assert limited.json() == {"error": "Too many requests"}


@pytest.mark.django_db
def test_everything_but_collect_goes_to_django():
    client = RouteClient()
    assert client.get("/api/v1/ping").json() == {"ok": True}
    assert client.get("/api/v1/collect/").status_code == 404  # not collect's path: Django's 404
    assert client.get("/admin/login/").status_code == 200


@pytest.mark.django_db
def test_a_host_not_allowed_is_refused_and_nothing_recorded():
    setup = make_setup()
    response = post(RouteClient(), payload(setup.site), HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid Host header"}
    assert not Visitor.objects.exists()
    assert post(RouteClient(), payload(setup.site), HTTP_HOST="localhost:8000").status_code == 200


@pytest.mark.django_db
@override_settings(SECURE_SSL_REDIRECT=True, SECURE_HSTS_SECONDS=3600, SECURE_HSTS_INCLUDE_SUBDOMAINS=True)
def test_over_plain_http_django_redirects_and_over_https_hsts_is_sent():
    setup = make_setup()
    # Django's middleware reads these settings when it is built: build it anew.
    client = RouteClient(CollectRoute(WSGIHandler()))
    redirected = post(client, payload(setup.site))
    assert redirected.status_code == 301
    assert redirected["Location"].startswith("https://")
    assert not Visitor.objects.exists()
    secure = post(client, payload(setup.site), environ={"wsgi.url_scheme": "https"})
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=3600; includeSubDomains"
    assert secure["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
@override_settings(TRUSTED_PROXY_COUNT=1, COLLECT_RATE_LIMIT_PER_MINUTE=1)
def test_behind_a_trusted_proxy_the_limit_counts_the_forwarded_client():
    setup = make_setup()
    client = RouteClient()
    proxy = {"REMOTE_ADDR": "10.9.9.9"}
    first = post(client, payload(setup.site), HTTP_X_FORWARDED_FOR="203.0.113.1", **proxy)
    other = post(client, payload(setup.site), HTTP_X_FORWARDED_FOR="203.0.113.2", **proxy)
    again = post(client, payload(setup.site), HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.1", **proxy)
    assert (first.status_code, other.status_code) == (200, 200)
    assert again.status_code == 429  # a forged first entry does not make another client


@pytest.mark.django_db
def test_a_body_without_a_length_is_read_up_to_the_cap():
    setup = make_setup()
    client = RouteClient()
    chunked = {"CONTENT_LENGTH": "", "wsgi.input_terminated": True}
    assert post(client, payload(setup.site), environ=chunked).status_code == 200
    huge = post(client, payload(setup.site, ref="x" * 20_000), environ=chunked)
    assert huge.status_code == 413
    assert huge.json() == {"error": "Request body too large"}
    # Without a length and without a terminated stream there is no body, as in Django.
    empty = post(client, payload(setup.site), environ={"CONTENT_LENGTH": ""})
    assert (empty.status_code, empty.json()) == (400, {"error": "Body must be JSON"})


@pytest.mark.django_db(transaction=True)
def test_a_returning_visitor_is_answered_from_redis_through_the_route_and_connections_are_closed():
    setup = make_setup()
    client = RouteClient()
    first = post(client, payload(setup.site)).json()
    # CONN_MAX_AGE is 0 in the tests: as after a Django request, the connection is closed.
    assert connection.connection is None
    with CaptureQueriesContext(connection) as queries:
        again = post(client, payload(setup.site, vid=first["vid"], url="https://shop.test/prices")).json()
    assert len(queries) == 0
    assert again["subs"] == first["subs"]
    assert again["vid"] == first["vid"]
