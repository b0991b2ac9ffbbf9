"""The REST API: keys (made once, hashed, revocable), project scope on every
endpoint, one error shape, per-key rate limits, the schema and docs."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import URLPattern, get_resolver

from integrations.api import urls as api_urls
from integrations.keys import api_key_create, api_key_revoke
from integrations.models import ApiKey
from mailbox_sync.models import Mailbox
from substitution.models import StaticAddress
from tests.factories import make_setup
from tests.test_api_support import lead_from_visitor, lead_to_main_address, visitor_with_session

pytestmark = pytest.mark.django_db


def bearer(key):
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) <= {"error", "code", "fields"}
    assert body["code"] == code and isinstance(body["error"], str) and body["error"]
    return body


@pytest.fixture
def shop():
    setup = make_setup()
    _row, key = api_key_create(project=setup.project, name="CRM")
    return setup, key


# --- Keys ----------------------------------------------------------------------


def test_a_request_without_a_key_is_401_with_a_bearer_challenge(client):
    response = client.get("/api/v1/leads")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Bearer etk_00000000_nope", "Bearer", "Basic dXNlcjpwYXNz", "Bearer a b", "Token etk_x", "Bearer ключ"],
)
def test_a_wrong_key_or_scheme_is_401(client, shop, header):
    assert_error(client.get("/api/v1/leads", HTTP_AUTHORIZATION=header), 401, "authentication_failed")


def test_a_key_is_stored_only_as_a_hash_and_records_its_last_use(client, shop):
    setup, key = shop
    row = ApiKey.objects.get()
    assert key.startswith("etk_" + row.prefix)
    assert key not in row.key_hash and row.key_hash != key
    assert row.last_used_at is None
    assert client.get("/api/v1/project", **bearer(key)).json() == {
        "id": setup.project.pk,
        "name": setup.project.name,
        "time_zone": "UTC",
        "key_name": "CRM",
        "key_read_only": False,
    }
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_a_revoked_key_is_refused(client, shop):
    _setup, key = shop
    assert client.get("/api/v1/leads", **bearer(key)).status_code == 200
    api_key_revoke(ApiKey.objects.get())
    assert_error(client.get("/api/v1/leads", **bearer(key)), 401, "authentication_failed")


def test_a_key_with_the_right_prefix_but_wrong_secret_is_refused(client, shop):
    _setup, key = shop
    assert_error(client.get("/api/v1/leads", **bearer(key[:-4] + "AAAA")), 401, "authentication_failed")


def test_the_command_prints_a_working_key_once(client):
    setup = make_setup(name="Command shop")
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", "--project", "Command shop", "--name", "curl", stdout=out, stderr=err)
    key = out.getvalue().strip()
    assert key.startswith("etk_") and key not in err.getvalue()
    assert client.get("/api/v1/project", **bearer(key)).json()["id"] == setup.project.pk
    call_command("create_api_key", "--project", str(setup.project.pk), "--read-only", stdout=out, stderr=err)
    assert ApiKey.objects.filter(project=setup.project, read_only=True).count() == 1


def test_a_key_made_in_admin_is_shown_once(client):
    setup = make_setup()
    client.force_login(get_user_model().objects.create_superuser("boss", "boss@shop.test", "pw"))
    response = client.post("/admin/integrations/apikey/add/", {"project": setup.project.pk, "name": "amoCRM"})
    assert response.status_code == 200
    row = ApiKey.objects.get()
    key = response.context["value"]
    assert key.startswith("etk_" + row.prefix) and key.encode() in response.content
    assert client.get("/api/v1/project", **bearer(key)).status_code == 200
    page = client.get(f"/admin/integrations/apikey/{row.pk}/change/")
    assert key.encode() not in page.content
    client.post("/admin/integrations/apikey/", {"action": "revoke", "_selected_action": [row.pk]})
    assert client.get("/api/v1/project", **bearer(key)).status_code == 401


def test_a_read_only_key_reads_but_cannot_change_a_lead(client):
    setup = make_setup()
    lead = lead_to_main_address(setup)
    _row, key = api_key_create(project=setup.project, name="BI", read_only=True)
    assert client.get(f"/api/v1/leads/{lead.pk}", **bearer(key)).status_code == 200
    response = client.patch(
        f"/api/v1/leads/{lead.pk}", {"status": "won"}, content_type="application/json", **bearer(key)
    )
    assert_error(response, 403, "permission_denied")
    lead.refresh_from_db()
    assert lead.status == "new"


# --- A key reaches only its own project, on every endpoint ---------------------


def _fill(setup, tag):
    """A lead with a letter and a session, a static address: something on every endpoint."""
    lead = lead_from_visitor(setup, visitor_with_session(setup, vid=f"v-{tag}", ga_client_id="1.2"))
    static = StaticAddress.objects.create(project=setup.project, name=f"Billboard {tag}", email=f"board@{tag}.test")
    return {
        "api-lead": lead.pk,
        "api-site": setup.site.pk,
        "api-pool": setup.pool.pk,
        "api-static-address": static.pk,
        "api-mailbox": setup.mailbox.pk,
    }


LIST_ROUTES = {  # route: (URL, the detail route of its items)
    "api-leads": ("/api/v1/leads", "api-lead"),
    "api-sites": ("/api/v1/sites", "api-site"),
    "api-pools": ("/api/v1/pools", "api-pool"),
    "api-static-addresses": ("/api/v1/static-addresses", "api-static-address"),
    "api-mailboxes": ("/api/v1/mailboxes", "api-mailbox"),
}
DETAIL_ROUTES = {
    "api-lead": "/api/v1/leads/{}",
    "api-site": "/api/v1/sites/{}",
    "api-pool": "/api/v1/pools/{}",
    "api-static-address": "/api/v1/static-addresses/{}",
    "api-mailbox": "/api/v1/mailboxes/{}",
}
# The messages endpoints (engagement) have their own scope tests in test_engagement_api.py.
OTHER_ROUTES = {"api-project", "api-summary", "api-costs", "api-schema", "api-docs", "api-messages", "api-message"}


def test_the_scope_test_below_covers_every_route():
    names = {p.name for p in api_urls.urlpatterns if isinstance(p, URLPattern) and p.name}
    assert names == set(LIST_ROUTES) | set(DETAIL_ROUTES) | OTHER_ROUTES
    assert "api-leads" in get_resolver().reverse_dict


def test_a_key_reaches_only_its_own_project_on_every_endpoint(client):
    mine, theirs = make_setup(name="Mine"), make_setup(name="Theirs", original="info@theirs.test")
    own, foreign = _fill(mine, "mine"), _fill(theirs, "theirs")
    _row, key = api_key_create(project=mine.project, name="CRM")

    for name, (url, item) in LIST_ROUTES.items():
        response = client.get(url, **bearer(key))
        assert response.status_code == 200, name
        assert {found["id"] for found in response.json()["results"]} == {own[item]}, name

    for name, url in DETAIL_ROUTES.items():
        assert client.get(url.format(own[name]), **bearer(key)).json()["id"] == own[name], name
        assert_error(client.get(url.format(foreign[name]), **bearer(key)), 404, "not_found")

    response = client.patch(
        f"/api/v1/leads/{foreign['api-lead']}", {"status": "spam"}, content_type="application/json", **bearer(key)
    )
    assert_error(response, 404, "not_found")
    from attribution.models import Lead

    assert Lead.objects.get(pk=foreign["api-lead"]).status == "new"

    assert client.get("/api/v1/project", **bearer(key)).json()["id"] == mine.project.pk
    summary = client.get("/api/v1/summary", **bearer(key)).json()
    assert summary["total"]["leads"] == 1  # not 2: the other project's lead is not counted


def test_filters_cannot_reach_another_projects_site_or_tag(client):
    mine, theirs = make_setup(name="Mine"), make_setup(name="Theirs", original="info@theirs.test")
    lead_to_main_address(mine)
    theirs_lead = lead_to_main_address(theirs)
    from attribution.leads import lead_update

    lead_update(lead=theirs_lead, tags=["secret"])
    _row, key = api_key_create(project=mine.project, name="CRM")
    assert client.get(f"/api/v1/leads?site={theirs.site.pk}", **bearer(key)).json()["results"] == []
    assert client.get("/api/v1/leads?tag=secret", **bearer(key)).json()["results"] == []


# --- Errors, limits, schema ----------------------------------------------------


def test_errors_share_one_shape(client, shop):
    _setup, key = shop
    body = assert_error(client.get("/api/v1/leads?status=maybe", **bearer(key)), 400, "invalid")
    assert "status" in body["fields"]
    assert_error(client.get("/api/v1/leads?cursor=garbage", **bearer(key)), 404, "invalid_cursor")
    assert_error(client.get("/api/v1/leads?limit=0", **bearer(key)), 400, "invalid")
    assert_error(client.get("/api/v1/leads?created_after=yesterday", **bearer(key)), 400, "invalid")
    assert_error(client.get("/api/v1/leads/999999999", **bearer(key)), 404, "not_found")
    assert_error(client.get("/api/v1/leads/99999999999999999999999", **bearer(key)), 404, "not_found")
    assert_error(client.get("/api/v1/no-such-thing", **bearer(key)), 404, "not_found")
    assert_error(client.delete("/api/v1/leads", **bearer(key)), 405, "method_not_allowed")
    assert_error(client.get("/api/v1/leads", HTTP_ACCEPT="text/html", **bearer(key)), 406, "not_acceptable")
    lead = lead_to_main_address(_setup)
    url = f"/api/v1/leads/{lead.pk}"
    assert_error(client.patch(url, "{nope", content_type="application/json", **bearer(key)), 400, "parse_error")
    assert_error(
        client.patch(url, "status=won", content_type="text/plain", **bearer(key)), 415, "unsupported_media_type"
    )
    assert_error(client.patch(url, "[]", content_type="application/json", **bearer(key)), 400, "invalid")
    too_big = '{"comment": "' + "x" * 3_000_000 + '"}'
    assert_error(client.patch(url, too_big, content_type="application/json", **bearer(key)), 413, "too_large")
    many = "&".join(f"p{n}=1" for n in range(2000))
    assert_error(client.get(f"/api/v1/leads?{many}", **bearer(key)), 400, "parse_error")


def test_the_collect_ping_and_report_endpoints_stay_outside_the_key_scheme(client):
    assert client.get("/api/v1/ping").status_code == 200
    response = client.post("/api/v1/collect", "{}", content_type="text/plain")
    assert response.status_code == 400 and "error" in response.json()  # the collect endpoint's own answer


def test_each_key_has_its_own_rate_limit_with_retry_after(client, settings, shop):
    settings.API_RATE_LIMIT_PER_MINUTE = 3
    setup, key = shop
    _row, other_key = api_key_create(project=setup.project, name="Other")
    remaining = [client.get("/api/v1/project", **bearer(key))["X-RateLimit-Remaining"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    response = client.get("/api/v1/project", **bearer(key))
    assert_error(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert client.get("/api/v1/project", **bearer(other_key)).status_code == 200


def test_the_schema_and_the_docs_are_served(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    document = schema.json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/api/v1/project",
        "/api/v1/costs",
        "/api/v1/leads",
        "/api/v1/leads/{lead_id}",
        "/api/v1/sites",
        "/api/v1/sites/{id}",
        "/api/v1/pools",
        "/api/v1/pools/{id}",
        "/api/v1/static-addresses",
        "/api/v1/static-addresses/{id}",
        "/api/v1/mailboxes",
        "/api/v1/mailboxes/{id}",
        "/api/v1/summary",
        "/api/v1/messages",
        "/api/v1/messages/{message_id}",
    }
    assert document["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["ApiKey"]["description"],
    }
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_no_secret_of_a_mailbox_ever_appears(client, shop):
    setup, key = shop
    mailbox = Mailbox.objects.get(pk=setup.mailbox.pk)
    for url in ("/api/v1/mailboxes", f"/api/v1/mailboxes/{mailbox.pk}"):
        content = client.get(url, **bearer(key)).content
        assert b"password" not in content
        assert b"secret" not in content  # the factory's password
        assert mailbox.password_encrypted.encode() not in content
