"""The collect endpoint under arbitrary input (hypothesis): JSON values of any
type in every field, unknown fields, huge strings, arbitrary bytes and
headers. It never answers 5xx: only 200, or 400/403/404/413/429 with a JSON
{"error"}; and unknown fields change nothing."""

import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import make_setup
from tests.route import RouteClient
from tracker.models import Session, Visitor

pytestmark = pytest.mark.django_db

FIELDS = ("v", "site", "vid", "url", "ref", "screen", "lang", "ga", "ym", "consent", "hb")
ALLOWED = {200, 400, 403, 404, 413, 429}
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure in CI reproduces locally
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text a database may refuse: NUL, lone surrogates (JSON "\ud800" decodes to one), odd separators.
nasty_text = st.text(
    alphabet=st.characters(exclude_categories=()) | st.sampled_from(["\x00", "\ud800", "\udfff", "\u2028", "\ufeff"]),
    max_size=40,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | nasty_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)
huge_strings = st.integers(min_value=1_000, max_value=12_000).map(lambda n: "x" * n)
urls = st.sampled_from(["https://shop.test/", "http://shop.test/?utm_source=a&utm_medium=cpc&gclid=1", ""]) | (
    nasty_text.map(lambda tail: "https://shop.test/?utm_campaign=" + tail)
)


def plausible(name: str, site_key: str):
    """A value of the right shape for the field."""
    return {
        "v": st.just(1),
        "site": st.just(site_key),
        "vid": st.none() | st.from_regex(r"\A[A-Za-z0-9_-]{8,64}\Z"),
        "url": urls,
        "ref": urls | st.just("https://www.google.com/search?q=sofa"),
        "consent": st.booleans(),
        "hb": st.booleans(),
    }.get(name, nasty_text)


@st.composite
def payloads(draw, site_key: str):
    """Half the bodies plausible in every field, so requests get deep into
    collect; the rest with one to all fields any JSON value or a huge string.
    Optional fields are sometimes left out."""
    mode = draw(st.integers(0, 3))
    broken = set() if mode < 2 else draw(st.sets(st.sampled_from(FIELDS), min_size=1, max_size=2 + 9 * (mode - 2)))
    payload = {}
    for name in FIELDS:
        if name in broken:
            payload[name] = draw(json_values if draw(st.integers(0, 5)) else huge_strings)
        elif name in ("v", "site") or draw(st.integers(0, 4)):
            payload[name] = draw(plausible(name, site_key))
    unknown = draw(st.dictionaries(st.text(max_size=12).filter(lambda k: k not in FIELDS), json_values, max_size=3))
    return {**payload, **unknown}


def mostly(common: list, rare):
    return st.integers(0, 7).flatmap(lambda n: rare if n == 0 else st.sampled_from(common))


headers = st.fixed_dictionaries(
    {
        "HTTP_ORIGIN": mostly(
            [
                "http://shop.test",
                "https://www.shop.test",
                "http://127.0.0.1:8000",
                "http://shop.test",
                "http://evil.test",
            ],
            st.text(max_size=30),
        ),
        "HTTP_USER_AGENT": mostly(
            ["Mozilla/5.0 (Windows NT 10.0) Chrome/126.0", "Googlebot/2.1 (+http://www.google.com/bot.html)", ""],
            nasty_text,
        ),
        "HTTP_X_FORWARDED_FOR": mostly(["", "81.2.69.160", "::1, 10.0.0.1"], st.text(max_size=30)),
    }
)


def assert_contract(response):
    assert response.status_code in ALLOWED, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json"
    answer = response.json()
    if response.status_code == 200:
        assert set(answer) == {"vid", "subs", "exp", "hb"}
        assert isinstance(answer["subs"], list)
    else:
        assert set(answer) == {"error"} and isinstance(answer["error"], str) and answer["error"]


CLIENTS = {
    # Through Django, and through the WSGI route that answers collect in production.
    "django": lambda: Client(raise_request_exception=False),
    "route": RouteClient,
}


@pytest.fixture(params=CLIENTS)
def client_kind(request):
    return request.param


def post(body: bytes, extra: dict, kind: str = "django"):
    # Header values must be text a WSGI server could hand over.
    extra = {k: v.encode("latin-1", "replace").decode("latin-1") for k, v in extra.items()}
    return CLIENTS[kind]().post("/api/v1/collect", data=body, content_type="text/plain", **extra)


@pytest.fixture
def site_key():
    return make_setup().site.site_key


def test_any_json_in_any_field_gets_a_contract_answer_never_5xx(site_key, client_kind):
    @FUZZ
    @given(payload=st.data(), extra=headers)
    def check(payload, extra):
        body = json.dumps(payload.draw(payloads(site_key))).encode()
        assert_contract(post(body, extra, client_kind))

    check()


def test_any_bytes_as_body_get_a_contract_answer_never_5xx(site_key, client_kind):
    @FUZZ
    @given(
        body=st.binary(max_size=600)
        | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))
        | st.integers(8_000, 20_000).map(lambda n: b"{" * n),
        extra=headers,
    )
    def check(body, extra):
        assert_contract(post(body, extra, client_kind))

    check()


def test_unknown_fields_are_ignored(site_key):
    base = {"v": 1, "site": site_key, "vid": "fuzz-visitor-1", "url": "https://shop.test/?utm_medium=email"}
    first = post(json.dumps(base).encode(), {"HTTP_ORIGIN": "http://shop.test"}).json()
    assert first["subs"]

    @settings(FUZZ, max_examples=100)  # every example is a full page view: keep the run short
    @given(unknown=st.dictionaries(st.text(max_size=12).filter(lambda k: k not in FIELDS), json_values, max_size=5))
    def check(unknown):
        views = Session.objects.get().page_views
        response = post(json.dumps({**unknown, **base}).encode(), {"HTTP_ORIGIN": "http://shop.test"})
        assert response.status_code == 200, response.content[:300]
        assert response.json()["subs"] == first["subs"]
        session = Visitor.objects.get().sessions.get()
        assert (session.page_views, session.channel) == (views + 1, "email")

    check()
