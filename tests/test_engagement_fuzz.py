# ruff: noqa: F811 - pytest fixtures imported from tests.engagement_fixtures
"""The pixel and click endpoints under arbitrary input (hypothesis): tokens
of any text, real tokens cut or changed, any method, user agent and client
address, through the WSGI route and through Django. Never a 5xx: the pixel
is always the GIF for GET (empty for HEAD), a click a 302 only to the
letter's own link for its genuine token and a 400 page otherwise; only
genuine tokens are ever recorded."""

from urllib.parse import quote

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engagement import recording
from engagement.endpoint import GIF
from engagement.models import Event
from tests.engagement_fixtures import empty_stream, make_project, path_of, track  # noqa: F401 - fixtures
from tests.route import RouteClient

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_stream")]

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
nasty = st.text(
    alphabet=st.characters(exclude_categories=("Cs",)) | st.sampled_from(["\x00", "\r", "\n", "/", ".", "%", "="]),
    max_size=120,
)
headers = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=300)


@pytest.fixture
def letter(settings):
    settings.ENGAGEMENT_EVENTS_PER_RECIPIENT_PER_MINUTE = 10_000  # every genuine request recorded
    project, _key = make_project()
    return track(project).copies[0]


def _mangled(token: str, at: int, char: str) -> str:
    at %= len(token)
    return token[:at] + char + token[at + 1 :]


def _token(url: str, prefix: str, suffix: str = "") -> str:
    path = path_of(url)
    return path[len(prefix) : len(path) - len(suffix)]


@FUZZ
@given(
    choice=st.sampled_from(["nasty", "mangled", "cut", "genuine"]),
    text=nasty,
    at=st.integers(min_value=0, max_value=200),
    char=st.sampled_from(list("AZaz09-_") + ["~", "é"]),
    method=st.sampled_from(["GET", "HEAD", "POST", "OPTIONS"]),
    ua=headers,
    forwarded=headers,
    route=st.booleans(),
)
def test_the_endpoints_never_fail_and_follow_only_genuine_tokens(
    letter, choice, text, at, char, method, ua, forwarded, route
):
    pixel = _token(letter.pixel_url, "/t/o/", ".gif")
    click = _token(letter.links[0][1], "/t/c/")
    tokens = {
        "nasty": (text, text),
        "mangled": (_mangled(pixel, at, char), _mangled(click, at, char)),
        "cut": (pixel[: at % len(pixel)], click[: at % len(click)]),
        "genuine": (pixel, click),
    }[choice]
    genuine = tokens == (pixel, click)
    client = RouteClient() if route else Client()
    extra = {"HTTP_USER_AGENT": ua, "HTTP_X_FORWARDED_FOR": forwarded}
    before = Event.objects.count()

    answer = _call(client, method, f"/t/o/{quote(tokens[0], safe='')}.gif", extra)
    if method in ("GET", "HEAD"):
        assert answer.status_code == 200 and answer["Content-Type"] == "image/gif"
        assert answer.content == (GIF if method == "GET" else b"")
        assert "no-store" in answer["Cache-Control"]
    else:
        assert answer.status_code == 405

    answer = _call(client, method, f"/t/c/{quote(tokens[1], safe='')}", extra)
    if method not in ("GET", "HEAD"):
        assert answer.status_code == 405
    elif genuine:
        assert answer.status_code == 302 and answer["Location"] == "https://shop.test/price"
    else:
        assert answer.status_code == 400 and "Location" not in answer

    recording.drain()
    recorded = Event.objects.count() - before
    if genuine and method in ("GET", "HEAD"):
        assert 2 <= recorded <= 3  # the open and the click (and an open inferred from a person's click)
    else:
        assert recorded == 0


def _call(client, method, path, extra):
    if isinstance(client, RouteClient):
        return client.request(method, path, **extra)
    return client.generic(method, path, **extra)
