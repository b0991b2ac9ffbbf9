"""GA4 Measurement Protocol and Yandex Metrica offline conversions, against
local HTTP receivers that check each request the way those APIs expect it."""

import csv
import io
import json
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from django.contrib.auth import get_user_model

from integrations import analytics, tasks
from integrations.models import Conversion, OutboundStatus, SiteAnalytics
from tests.factories import make_setup
from tests.test_api_support import Receiver, Reply, lead_from_visitor, lead_to_main_address, visitor_with_session

pytestmark = pytest.mark.django_db(transaction=True)

GA_SECRET = "ga4-api-secret-xyz"
METRICA_TOKEN = "y0_metrica-oauth-token"
COUNTER = 98765432


def ga4_check(request):
    """What the Measurement Protocol needs: its path, the measurement id and
    API secret in the query, a JSON body with a client id and named events."""
    try:
        body = request.json()
        assert request.path == "/mp/collect"
        assert request.query["measurement_id"].startswith("G-")
        assert request.query["api_secret"] == GA_SECRET
        assert request.headers["content-type"] == "application/json"
        assert isinstance(body["client_id"], str) and body["client_id"]
        assert body["events"] and all(isinstance(e["name"], str) and len(e["name"]) <= 40 for e in body["events"])
        assert all(len(str(v)) <= 100 for e in body["events"] for v in e["params"].values())
    except (AssertionError, KeyError, ValueError):
        return Reply(400, b"bad request")
    return Reply(204, b"")


def metrica_multipart(request) -> list[dict]:
    """The CSV rows of the `file` part of a multipart/form-data upload."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = message_from_bytes(head + request.body, policy=policy.HTTP)
    assert message.is_multipart()
    [part] = [p for p in message.iter_parts() if p.get_param("name", header="content-disposition") == "file"]
    assert part.get_filename().endswith(".csv")
    return list(csv.DictReader(io.StringIO(part.get_payload(decode=True).decode("utf-8"))))


def metrica_check(request):
    try:
        assert request.path == f"/management/v1/counter/{COUNTER}/offline_conversions/upload"
        assert request.query["client_id_type"] == "CLIENT_ID"
        if request.headers.get("authorization") != f"OAuth {METRICA_TOKEN}":
            return Reply(403, b'{"errors":[{"error_type":"access_denied"}]}')
        rows = metrica_multipart(request)
        assert rows and set(rows[0]) == {"ClientId", "Target", "DateTime"}
    except (AssertionError, KeyError, ValueError):
        return Reply(400, b'{"errors":[{"error_type":"invalid_parameter"}]}')
    return Reply(200, json.dumps({"uploading": {"id": 555, "status": "UPLOADED"}}).encode())


@pytest.fixture
def ga4(settings):
    server = Receiver()
    server.check = ga4_check
    settings.GA4_COLLECT_URL = server.url + "/mp/collect"
    yield server
    server.close()


@pytest.fixture
def metrica(settings):
    server = Receiver()
    server.check = metrica_check
    settings.METRICA_API_BASE_URL = server.url
    yield server
    server.close()


@pytest.fixture
def eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.CELERY_TASK_EAGER_PROPAGATES = True


def configure(site, *, ga4=True, metrica=True) -> SiteAnalytics:
    config = SiteAnalytics(
        site=site,
        ga4_enabled=ga4,
        ga4_measurement_id="G-TEST1234",
        metrica_enabled=metrica,
        metrica_counter_id=COUNTER,
        metrica_goal="email_lead",
    )
    analytics.site_analytics_set_secrets(config, ga4_api_secret=GA_SECRET, metrica_token=METRICA_TOKEN)
    config.save()
    return config


def test_a_lead_with_a_ga_client_id_sends_one_email_lead_event(eager, ga4, metrica):
    setup = make_setup()
    configure(setup.site, metrica=False)
    person = visitor_with_session(
        setup,
        ga_client_id="1234567890.1700000000",
        source="google",
        utm_source="google",
        utm_medium="cpc",
        utm_campaign="bricks",
    )
    lead = lead_from_visitor(setup, person)

    assert len(ga4.requests) == 1 and metrica.requests == []
    body = ga4.requests[0].json()
    assert body["client_id"] == "1234567890.1700000000"
    [event] = body["events"]
    assert event["name"] == "email_lead"
    assert event["params"]["lead_id"] == str(lead.pk)
    assert event["params"]["source"] == lead.source
    assert event["params"]["campaign"] == "bricks"
    assert body["timestamp_micros"] == int(lead.created_at.timestamp() * 1_000_000)
    conversion = Conversion.objects.get()
    assert (conversion.target, conversion.status) == ("ga4", OutboundStatus.SENT)


def test_a_lead_with_a_metrica_client_id_is_uploaded_as_an_offline_conversion(eager, ga4, metrica):
    setup = make_setup()
    configure(setup.site, ga4=False)
    person = visitor_with_session(setup, ym_client_id="1700000000123456789")
    lead = lead_from_visitor(setup, person)

    assert len(metrica.requests) == 1 and ga4.requests == []
    rows = metrica_multipart(metrica.requests[0])
    assert rows == [
        {"ClientId": "1700000000123456789", "Target": "email_lead", "DateTime": str(int(lead.created_at.timestamp()))}
    ]
    conversion = Conversion.objects.get()
    assert (conversion.target, conversion.status, conversion.upload_id) == ("metrica", OutboundStatus.SENT, "555")


def test_both_systems_get_the_lead_when_the_visitor_has_both_ids(eager, ga4, metrica):
    setup = make_setup()
    configure(setup.site)
    lead_from_visitor(setup, visitor_with_session(setup, ga_client_id="1.2", ym_client_id="345"))
    assert (len(ga4.requests), len(metrica.requests)) == (1, 1)
    assert sorted(Conversion.objects.values_list("target", "status")) == [("ga4", "sent"), ("metrica", "sent")]


def test_nothing_is_sent_without_a_client_id_a_session_or_a_configured_site(eager, ga4, metrica):
    setup = make_setup()
    configure(setup.site)
    lead_from_visitor(setup, visitor_with_session(setup, vid="no-ids"))  # no GA / Metrica cookies
    lead_to_main_address(setup)  # no session at all
    other = make_setup(name="Other", original="info@other.test")
    lead_from_visitor(other, visitor_with_session(other, vid="x", ga_client_id="1.2", ym_client_id="3"))
    disabled = make_setup(name="Off", original="info@off.test")
    configure(disabled.site, ga4=False, metrica=False)
    lead_from_visitor(disabled, visitor_with_session(disabled, vid="y", ga_client_id="1.2", ym_client_id="3"))
    assert ga4.requests == [] and metrica.requests == []
    assert not Conversion.objects.exists()


def test_a_failing_upload_is_retried_by_celery_until_it_goes_through(eager, ga4, metrica):
    setup = make_setup()
    configure(setup.site, ga4=False)
    metrica.check = None
    metrica.replies = [Reply(503, b"busy"), Reply(500, b"oops")]
    lead_from_visitor(setup, visitor_with_session(setup, ym_client_id="345"))
    conversion = Conversion.objects.get()
    assert (conversion.status, conversion.attempts) == (OutboundStatus.PENDING, 1)
    for _ in range(2):  # the beat sweep picks the retry up once it is due
        Conversion.objects.update(next_attempt_at=conversion.next_attempt_at - timedelta(hours=1))
        tasks.send_due()
        conversion.refresh_from_db()
    assert (conversion.status, conversion.attempts) == (OutboundStatus.SENT, 3)
    assert len(metrica.requests) == 3


def test_a_refused_token_fails_at_once_and_never_shows_the_token(eager, metrica):
    setup = make_setup()
    config = configure(setup.site, ga4=False)
    analytics.site_analytics_set_secrets(config, metrica_token="wrong-token")
    config.save()
    lead_from_visitor(setup, visitor_with_session(setup, ym_client_id="345"))
    conversion = Conversion.objects.get()
    assert conversion.status == OutboundStatus.FAILED
    assert "403" in conversion.last_error and "wrong-token" not in conversion.last_error
    assert len(metrica.requests) == 1


def test_an_old_lead_is_sent_without_a_timestamp_ga4_would_drop(ga4):
    setup = make_setup()
    config = configure(setup.site, metrica=False)
    lead = lead_from_visitor(setup, visitor_with_session(setup, ga_client_id="1.2"))
    _url, body = analytics.ga4_request(lead, config, now=lead.created_at + timedelta(hours=80))
    assert "timestamp_micros" not in json.loads(body)
    url, body = analytics.ga4_request(lead, config, now=lead.created_at + timedelta(hours=1))
    assert json.loads(body)["timestamp_micros"] == int(lead.created_at.timestamp() * 1_000_000)
    assert url.startswith(ga4.url + "/mp/collect?measurement_id=G-TEST1234&api_secret=")


def test_secrets_are_stored_encrypted_and_never_shown_in_admin(client):
    setup = make_setup()
    admin = get_user_model().objects.create_superuser("boss", "boss@shop.test", "pw")
    client.force_login(admin)
    response = client.post(
        "/admin/integrations/siteanalytics/add/",
        {
            "site": setup.site.pk,
            "ga4_enabled": "on",
            "ga4_measurement_id": "G-ABCD1234",
            "ga4_api_secret": GA_SECRET,
            "ga4_event_name": "email_lead",
            "metrica_enabled": "on",
            "metrica_counter_id": COUNTER,
            "metrica_goal": "email_lead",
            "metrica_token": METRICA_TOKEN,
        },
    )
    assert response.status_code == 302, response.content[:3000]
    config = SiteAnalytics.objects.get()
    assert GA_SECRET not in config.ga4_api_secret_encrypted
    assert METRICA_TOKEN not in config.metrica_token_encrypted
    page = client.get(f"/admin/integrations/siteanalytics/{config.pk}/change/")
    assert page.status_code == 200
    assert GA_SECRET.encode() not in page.content and METRICA_TOKEN.encode() not in page.content
    # Saving again without typing them keeps them.
    response = client.post(
        f"/admin/integrations/siteanalytics/{config.pk}/change/",
        {
            "site": setup.site.pk,
            "ga4_enabled": "on",
            "ga4_measurement_id": "G-ABCD1234",
            "ga4_event_name": "email_lead",
            "metrica_goal": "email_lead",
        },
    )
    assert response.status_code == 302
    config.refresh_from_db()
    from lib import crypto

    assert crypto.decrypt(config.ga4_api_secret_encrypted) == GA_SECRET
    assert crypto.decrypt(config.metrica_token_encrypted) == METRICA_TOKEN


def test_enabling_ga4_without_its_secret_is_refused_in_admin(client):
    setup = make_setup()
    client.force_login(get_user_model().objects.create_superuser("boss", "boss@shop.test", "pw"))
    response = client.post(
        "/admin/integrations/siteanalytics/add/",
        {
            "site": setup.site.pk,
            "ga4_enabled": "on",
            "ga4_measurement_id": "G-ABCD1234",
            "metrica_goal": "g",
            "ga4_event_name": "email_lead",
        },
    )
    assert response.status_code == 200
    assert b"Measurement Protocol API secret" in response.content
    assert not SiteAnalytics.objects.exists()
