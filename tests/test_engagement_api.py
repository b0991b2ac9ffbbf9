# ruff: noqa: F811 - pytest fixtures imported from tests.engagement_fixtures
"""The messages API: tracked copies per recipient, a message's events and
figures, a campaign's list with totals, bad input (never a 500), the schema,
and each key reaching only its own project's messages."""

import pytest
from django.core import signals
from django.db import close_old_connections

from attribution.models import Lead
from engagement import recording
from engagement.models import Event, Message, OptOut
from integrations.keys import api_key_create
from tests.engagement_fixtures import (  # noqa: F401 - fixtures
    APPLE_IP,
    CHROME_UA,
    GMAIL_PROXY_UA,
    IPHONE_UA,
    LETTER,
    bearer,
    empty_stream,
    fetch,
    make_project,
    trusted_proxy,
)
from tests.test_api_schema import schema as api_schema

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_stream", "trusted_proxy")]


def post(client, key, payload, **extra):
    return client.post("/api/v1/messages", payload, content_type="application/json", **bearer(key), **extra)


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code and body["error"]
    return body


def test_it_answers_one_tracked_copy_per_recipient(client):
    project, key = make_project()
    response = post(
        client,
        key,
        {
            "subject": "Offer",
            "html": LETTER,
            "text": "Hello: https://shop.test/price",
            "recipients": ["anna@client.test", "boris@client.test"],
            "campaign": "autumn",
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    message = Message.objects.get(pk=body["id"])
    assert message.project == project and message.campaign == "autumn" and message.has_text
    assert [r["email"] for r in body["recipients"]] == ["anna@client.test", "boris@client.test"]
    anna, boris = body["recipients"]
    assert anna["pixel_url"] != boris["pixel_url"] and anna["pixel_url"] in anna["html"]
    assert [link["url"] for link in anna["links"]] == [
        "https://shop.test/price",
        "https://shop.test/catalog?utm_source=mail&x=1",
    ]
    assert all(link["tracked_url"] in anna["html"] for link in anna["links"])
    assert body["text"] == {"tracked": False, "note": body["text"]["note"]} and "pixel" in body["text"]["note"]


def test_an_opted_out_recipient_gets_the_html_unchanged(client):
    project, key = make_project()
    OptOut.objects.create(project=project, email="boris@client.test")
    body = post(client, key, {"html": LETTER, "recipients": ["anna@client.test", "boris@client.test"]}).json()
    assert body["recipients"][1] == {
        "email": "boris@client.test",
        "tracked": False,
        "reason": "opted_out",
        "html": LETTER,
        "pixel_url": None,
        "links": [],
    }


def test_with_one_recipient_opted_out_the_other_is_tracked_and_nothing_of_the_first_is_kept(client):
    project, key = make_project()
    OptOut.objects.create(project=project, email="boris@client.test")
    response = post(client, key, {"html": LETTER, "recipients": ["anna@client.test", "Boris@Client.test"]})
    assert response.status_code == 201, response.content
    body = response.json()
    anna, boris = body["recipients"]
    assert anna["tracked"] is True and anna["reason"] is None and anna["pixel_url"] in anna["html"]
    assert boris["tracked"] is False and boris["reason"] == "opted_out"
    assert boris["html"] == LETTER and "/t/o/" not in boris["html"] and "/t/c/" not in boris["html"]
    message = Message.objects.get(pk=body["id"], project=project)
    assert list(message.recipients.values_list("email", flat=True)) == ["anna@client.test"]


def test_when_every_recipient_opted_out_the_message_is_still_stored_with_its_id(client):
    project, key = make_project()
    OptOut.objects.create(project=project, email="anna@client.test")
    OptOut.objects.create(project=project, email="boris@client.test")
    response = post(
        client,
        key,
        {"subject": "Offer", "html": LETTER, "recipients": ["anna@client.test", "boris@client.test"], "campaign": "c"},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert isinstance(body["id"], int)
    assert [
        (r["email"], r["tracked"], r["reason"], r["html"], r["pixel_url"], r["links"]) for r in body["recipients"]
    ] == [
        ("anna@client.test", False, "opted_out", LETTER, None, []),
        ("boris@client.test", False, "opted_out", LETTER, None, []),
    ]
    message = Message.objects.get(pk=body["id"], project=project)
    assert message.subject == "Offer" and message.campaign == "c" and not message.recipients.exists()
    detail = client.get(f"/api/v1/messages/{body['id']}", **bearer(key))
    assert detail.status_code == 200
    assert detail.json()["recipients"] == [] and detail.json()["totals"]["recipients"] == 0
    assert [m["id"] for m in client.get("/api/v1/messages?campaign=c", **bearer(key)).json()["results"]] == [body["id"]]
    assert body["text"] is None


def test_a_message_shows_each_recipients_events_and_its_figures(client):
    project, key = make_project()
    body = post(client, key, {"html": LETTER, "recipients": ["anna@client.test", "boris@client.test"]}).json()
    anna, boris = body["recipients"]
    fetch(client, anna["pixel_url"], ua="Mozilla/5.0", ip=APPLE_IP)  # Apple's prefetch
    fetch(client, anna["pixel_url"], ua=IPHONE_UA)
    fetch(client, anna["links"][0]["tracked_url"], ua=IPHONE_UA)
    fetch(client, boris["links"][1]["tracked_url"], ua=CHROME_UA)  # a click, no open seen: inferred
    fetch(client, boris["links"][1]["tracked_url"], method="head")  # never counted
    recording.drain()
    detail = client.get(f"/api/v1/messages/{body['id']}", **bearer(key)).json()
    assert detail["totals"]["opens"] == {
        "human": 1,
        "machine": 1,
        "inferred": 1,
        "machine_by_kind": {"apple_mpp": 1},
    }
    assert detail["totals"]["clicks"] == {"human": 2, "machine": 0}
    assert detail["totals"]["devices"] == {"mobile": 1}
    assert detail["totals"]["first_open_at"] is not None and detail["totals"]["replies"] == 0
    recipients = {r["email"]: r for r in detail["recipients"]}
    assert recipients["anna@client.test"]["open_state"] == "person"
    assert recipients["boris@client.test"]["open_state"] == "inferred"
    assert [(e["kind"], e["verdict"], e["inferred"]) for e in recipients["boris@client.test"]["events"]] == [
        ("open", "human", True),
        ("click", "human", False),
        ("click", "scanner", False),
    ]
    assert {link["url"]: (link["human"], link["machine"]) for link in detail["links"]} == {
        "https://shop.test/price": (1, 0),
        "https://shop.test/catalog?utm_source=mail&x=1": (1, 0),
    }


def test_the_list_filters_by_campaign_and_sums_its_totals(client):
    project, key = make_project()
    for campaign, recipient in (("autumn", "a@client.test"), ("autumn", "b@client.test"), ("spring", "c@client.test")):
        body = post(client, key, {"html": LETTER, "recipients": [recipient], "campaign": campaign}).json()
        fetch(client, body["recipients"][0]["pixel_url"], ua=GMAIL_PROXY_UA, ip="66.249.84.1")
    recording.drain()
    listed = client.get("/api/v1/messages?campaign=autumn", **bearer(key)).json()
    assert len(listed["results"]) == 2 and listed["campaign"] == "autumn"
    assert all(m["totals"]["opens"]["human"] == 1 for m in listed["results"])
    assert listed["totals"]["opens"]["human"] == 2 and listed["totals"]["recipients"] == 2
    assert len(client.get("/api/v1/messages", **bearer(key)).json()["results"]) == 3


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"recipients": ["a@client.test"]}, "html"),
        ({"html": LETTER}, "recipients"),
        ({"html": LETTER, "recipients": []}, "recipients"),
        ({"html": LETTER, "recipients": ["not an address"]}, "recipients"),
        ({"html": LETTER, "recipients": "a@client.test"}, "recipients"),
        ({"html": "x\x00y", "recipients": ["a@client.test"]}, "html"),
        ({"html": LETTER, "recipients": ["a@client.test"], "lead": "x"}, "lead"),
        ({"html": LETTER, "recipients": ["a@client.test"], "lead": 10**30}, "lead"),
        ({"html": LETTER, "recipients": [f"r{i}@client.test" for i in range(101)]}, "recipients"),
    ],
)
def test_bad_input_is_a_clear_400(client, payload, field):
    _project, key = make_project()
    body = assert_error(post(client, key, payload), 400, "invalid")
    assert field in body["fields"]
    assert not Message.objects.exists()


def test_malformed_json_and_a_huge_letter_are_refused_clearly(client, settings):
    _project, key = make_project()
    response = client.post("/api/v1/messages", b"{not json", content_type="application/json", **bearer(key))
    assert_error(response, 400, "parse_error")
    settings.ENGAGEMENT_MAX_HTML_BYTES = 10_000
    assert_error(post(client, key, {"html": "<p>" + "x" * 20_000, "recipients": ["a@client.test"]}), 413, "too_large")
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 50_000
    assert_error(post(client, key, {"html": "<p>" + "x" * 60_000, "recipients": ["a@client.test"]}), 413, "too_large")
    assert not Message.objects.exists()


def test_odd_letters_are_tracked_without_a_500(client):
    _project, key = make_project()
    for html in (
        "<p>no body <a href='https://пример.рф/'>x</a>",
        "<<<<",
        "plain words",
        "<a href='javascript:x'>j</a>",
    ):
        response = post(client, key, {"html": html, "recipients": ["a@client.test"]})
        assert response.status_code == 201, html
        assert response.json()["recipients"][0]["pixel_url"]


def test_tracking_off_is_a_409_and_a_read_only_key_cannot_track(client):
    project, key = make_project(tracking=False)
    assert_error(post(client, key, {"html": LETTER, "recipients": ["a@client.test"]}), 409, "tracking_off")
    _row, read_only = api_key_create(project=project, name="Reader", read_only=True)
    assert_error(post(client, read_only, {"html": LETTER, "recipients": ["a@client.test"]}), 403, "permission_denied")


def test_a_key_reaches_only_its_own_projects_messages(client):
    mine, my_key = make_project("Mine")
    theirs, their_key = make_project("Theirs")
    my_lead = Lead.objects.create(project=mine, created_at="2026-01-01T00:00Z", last_letter_at="2026-01-01T00:00Z")
    their_lead = Lead.objects.create(project=theirs, created_at="2026-01-01T00:00Z", last_letter_at="2026-01-01T00:00Z")
    own = post(client, my_key, {"html": LETTER, "recipients": ["a@client.test"], "lead": my_lead.pk}).json()["id"]
    foreign = post(client, their_key, {"html": LETTER, "recipients": ["a@client.test"], "campaign": "x"}).json()["id"]
    assert Message.objects.get(pk=own).lead == my_lead
    assert_error(client.get(f"/api/v1/messages/{foreign}", **bearer(my_key)), 404, "not_found")
    assert [m["id"] for m in client.get("/api/v1/messages", **bearer(my_key)).json()["results"]] == [own]
    assert client.get("/api/v1/messages?campaign=x", **bearer(my_key)).json()["results"] == []
    assert_error(
        post(client, my_key, {"html": LETTER, "recipients": ["a@client.test"], "lead": their_lead.pk}), 404, "not_found"
    )
    assert client.get(f"/api/v1/messages/{own}").status_code == 401
    assert Event.objects.count() == 0


def test_the_schema_describes_the_messages_endpoints_with_examples(client):
    schema = client.get("/api/schema/?format=json").json()
    post_op = schema["paths"]["/api/v1/messages"]["post"]
    assert set(post_op["responses"]) >= {"201", "400", "401", "409", "413", "429"}
    assert post_op["requestBody"]["content"]["application/json"]["examples"]
    assert schema["paths"]["/api/v1/messages/{message_id}"]["get"]["responses"]["200"]["content"]["application/json"][
        "examples"
    ]
    assert "campaign" in {p["name"] for p in schema["paths"]["/api/v1/messages"]["get"]["parameters"]}


def test_real_answers_fit_the_schema(client):
    project, key = make_project()
    created = post(client, key, {"html": LETTER, "recipients": ["a@client.test"], "text": "x"})
    fetch(client, created.json()["recipients"][0]["pixel_url"], ua=IPHONE_UA)
    recording.drain()
    # As Django's test client does: the WSGI app must not close the test's connection.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        _validate_against_schema(key, created.json()["id"])
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def test_answers_with_opted_out_recipients_fit_the_schema(client):
    project, key = make_project()
    OptOut.objects.create(project=project, email="out@client.test")
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        headers = bearer_header(key)
        for recipients in (["out@client.test"], ["out@client.test", "in@client.test"]):
            made = api_schema["/api/v1/messages"]["POST"].Case(
                body={"html": LETTER, "recipients": recipients}, media_type="application/json"
            )
            answer = made.call_and_validate(headers=headers)
            assert answer.status_code == 201 and answer.json()["recipients"][0]["reason"] == "opted_out"
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    schema = client.get("/api/schema/?format=json").json()
    examples = schema["paths"]["/api/v1/messages"]["post"]["responses"]["201"]["content"]["application/json"][
        "examples"
    ]
    assert any(
        r["reason"] == "opted_out" and not r["tracked"] for e in examples.values() for r in e["value"]["recipients"]
    )


def _validate_against_schema(key, message_id):
    headers = bearer_header(key)
    detail = api_schema["/api/v1/messages/{message_id}"]["GET"].Case(path_parameters={"message_id": message_id})
    assert detail.call_and_validate(headers=headers).status_code == 200
    listed = api_schema["/api/v1/messages"]["GET"].Case(query={"campaign": ""})
    assert listed.call_and_validate(headers=headers).status_code == 200
    made = api_schema["/api/v1/messages"]["POST"].Case(
        body={"html": LETTER, "recipients": ["b@client.test"], "text": "x"}, media_type="application/json"
    )
    assert made.call_and_validate(headers=headers).status_code == 201


def bearer_header(key):
    return {"Authorization": f"Bearer {key}"}
