"""Shared builders for the engagement tests: a project with tracking on and
an API key, a tracked message, requests to the pixel and click endpoints from
a chosen address (through the trusted-proxy header) and user agent."""

import re

import pytest

from engagement import recording, services
from engagement.models import EngagementSettings, Origin
from integrations.keys import api_key_create
from projects.models import Project
from tests.factories import make_setup
from tests.route import RouteClient

CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
)
IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
)
GMAIL_PROXY_UA = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
GMAIL_PREFETCH_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0"
)
YAHOO_UA = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
APPLE_IP = "104.28.100.16"  # in Apple's Private Relay egress list
EOP_IP = "40.107.218.12"  # Microsoft Exchange Online Protection
PROOFPOINT_IP = "67.231.150.10"
PERSON_IP = "203.0.113.77"

LETTER = """<!doctype html><html><head><title>Offer</title></head><body>
<p>Hello! Our <a href="https://shop.test/price">price list</a> and
<a href="https://shop.test/catalog?utm_source=mail&amp;x=1">catalog</a>.</p>
<p><a href="mailto:sales@shop.test">Write to us</a>
<a href="https://shop.test/unsubscribe" data-emailtrack-skip>Unsubscribe</a></p>
</body></html>"""


def make_project(name="Sender", *, tracking=True) -> tuple[Project, str]:
    project = Project.objects.create(name=name)
    EngagementSettings.objects.create(project=project, tracking_enabled=tracking)
    _row, key = api_key_create(project=project, name="CRM")
    return project, key


def track(project, html=LETTER, recipients=("anna@client.test",), **kwargs) -> services.Tracked:
    return services.message_track(
        project_id=project.pk,
        origin=kwargs.pop("origin", Origin.API),
        html=html,
        recipients=list(recipients),
        subject=kwargs.pop("subject", "Offer"),
        **kwargs,
    )


def path_of(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def fetch(client, url: str, *, ua=CHROME_UA, ip=PERSON_IP, method="get"):
    extra = {"HTTP_USER_AGENT": ua, "HTTP_X_FORWARDED_FOR": ip}
    if isinstance(client, RouteClient):
        return client.request(method.upper(), path_of(url), **extra)
    return getattr(client, method)(path_of(url), **extra)


@pytest.fixture(params=["django", "wsgi_route"])
def http(request, client):
    """The Django test client, then the WSGI application as gunicorn serves it
    (engagement.wsgi answers before Django)."""
    return client if request.param == "django" else RouteClient()


@pytest.fixture
def shop():
    """The usual shop (tests.factories.make_setup) with engagement tracking on."""
    setup = make_setup()
    EngagementSettings.objects.create(project=setup.project, tracking_enabled=True)
    return setup


@pytest.fixture
def trusted_proxy(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    return settings


@pytest.fixture
def empty_stream():
    """No queued engagement events (nor replay counts) before or after."""

    def clear():
        client = recording.redis()
        client.delete(recording.STREAM, *client.keys(recording.RATE_KEY + "*"))

    clear()
    yield
    clear()


def bearer(key):
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}
