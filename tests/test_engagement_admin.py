# ruff: noqa: F811 - pytest fixtures imported from tests.engagement_fixtures
"""Admin for engagement: messages read-only with their recipients and events,
settings and opt-out list scoped to the user's projects, the network lists'
dates; and retention of events."""

from datetime import timedelta

import pytest
from django.utils import timezone

from engagement import recording, retention
from engagement.models import EngagementSettings, Event, OptOut
from tests.engagement_fixtures import IPHONE_UA, empty_stream, fetch, make_project, track, trusted_proxy  # noqa: F401
from tests.test_admin_and_journal import staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_stream", "trusted_proxy")]


def test_a_member_sees_only_their_projects_messages_read_only_with_events(client):
    mine, _k = make_project("Mine")
    theirs, _k2 = make_project("Theirs")
    own = track(mine, subject="Mine offer").copies[0]
    other = track(theirs, subject="Their offer").copies[0]
    fetch(client, own.pixel_url, ua=IPHONE_UA)
    recording.drain()
    client.force_login(staff("anna", mine))
    listing = client.get("/admin/engagement/message/")
    assert listing.status_code == 200
    assert b"Mine offer" in listing.content and b"Their offer" not in listing.content
    page = client.get(f"/admin/engagement/message/{own.recipient.message_id}/change/")
    assert page.status_code == 200
    assert b"anna@client.test" in page.content and b"Opened by a person" in page.content
    assert client.get(f"/admin/engagement/message/{other.recipient.message_id}/change/").status_code in (302, 403, 404)
    assert client.get("/admin/engagement/message/add/").status_code == 403
    response = client.post(f"/admin/engagement/message/{own.recipient.message_id}/change/", {"subject": "x"})
    assert response.status_code == 403


def test_settings_and_opt_outs_are_scoped_and_an_address_is_kept_lowercase(client):
    mine, _k = make_project("Mine")
    theirs, _k2 = make_project("Theirs")
    OptOut.objects.create(project=theirs, email="secret@client.test")
    client.force_login(staff("anna", mine))
    assert b"secret@client.test" not in client.get("/admin/engagement/optout/").content
    response = client.post(
        "/admin/engagement/optout/add/", {"project": mine.pk, "email": " Boris@Client.TEST ", "note": "asked"}
    )
    assert response.status_code == 302
    assert OptOut.objects.get(project=mine).email == "boris@client.test"
    page = client.get("/admin/engagement/engagementsettings/")
    assert page.status_code == 200 and b"Theirs" not in page.content
    settings_row = EngagementSettings.objects.get(project=theirs)
    assert client.get(f"/admin/engagement/engagementsettings/{settings_row.pk}/change/").status_code in (302, 403, 404)


def test_the_network_lists_page_shows_the_shipped_lists_dates(admin_client):
    page = admin_client.get("/admin/engagement/networklist/")
    assert page.status_code == 200
    assert b"2026-08-17" in page.content or b"Aug. 17, 2026" in page.content  # Apple's list


def test_events_older_than_the_projects_retention_are_deleted(client):
    project, _k = make_project()
    EngagementSettings.objects.filter(project=project).update(retention_days=30)
    copy = track(project).copies[0]
    fetch(client, copy.pixel_url, ua=IPHONE_UA)
    fetch(client, copy.pixel_url, ua=IPHONE_UA)
    recording.drain()
    old = Event.objects.filter(recipient=copy.recipient).first()
    Event.objects.filter(pk=old.pk).update(at=timezone.now() - timedelta(days=31))
    assert retention.purge_old_events(timezone.now()) == 1
    assert Event.objects.filter(recipient=copy.recipient).count() == 1
