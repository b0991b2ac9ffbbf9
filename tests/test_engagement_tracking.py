# ruff: noqa: F811 - pytest fixtures imported from tests.engagement_fixtures
"""Tracked copies of a letter, signed tokens, the pixel and click endpoints
(through Django and through the WSGI route), and the verdict of each kind of
fetch: people told from machines."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from engagement import networks, recording, rewriting, selectors, tokens
from engagement.endpoint import GIF
from engagement.models import Event, EventKind, MessageRecipient, NetworkList, OpenState, OptOut, Verdict
from engagement.services import EngagementError
from tests.engagement_fixtures import (  # noqa: F401 - fixtures
    APPLE_IP,
    CHROME_UA,
    EOP_IP,
    GMAIL_PREFETCH_UA,
    GMAIL_PROXY_UA,
    IPHONE_UA,
    LETTER,
    PERSON_IP,
    PROOFPOINT_IP,
    YAHOO_UA,
    empty_stream,
    fetch,
    http,
    make_project,
    track,
    trusted_proxy,
)
from tracker.geo import truncate_ip

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_stream", "trusted_proxy")]


def events_of(copy):
    recording.drain()
    return list(Event.objects.filter(recipient=copy.recipient).order_by("at", "id"))


# --- Tokens -------------------------------------------------------------------


def test_it_signs_tokens_that_carry_only_ids():
    token = tokens.sign(tokens.Token(tokens.CLICK, 12345, 678))
    assert tokens.verify(token) == tokens.Token(tokens.CLICK, 12345, 678)
    assert "@" not in token and len(token) < 40


@pytest.mark.parametrize(
    "mangle", [lambda t: t[:-1], lambda t: t[:5] + ("A" if t[5] != "A" else "B") + t[6:], str.upper]
)
def test_it_refuses_an_altered_or_cut_token(mangle):
    token = tokens.sign(tokens.Token(tokens.OPEN, 99))
    with pytest.raises(tokens.BadToken):
        tokens.verify(mangle(token))


def test_a_rotated_key_still_verifies_old_tokens_and_a_dropped_one_does_not(settings):
    settings.ENGAGEMENT_TOKEN_KEYS = ["old-key"]
    old = tokens.sign(tokens.Token(tokens.OPEN, 7))
    settings.ENGAGEMENT_TOKEN_KEYS = ["new-key", "old-key"]
    assert tokens.verify(old).recipient_id == 7
    assert tokens.sign(tokens.Token(tokens.OPEN, 7)) != old  # the new key signs
    settings.ENGAGEMENT_TOKEN_KEYS = ["new-key"]
    with pytest.raises(tokens.BadToken):
        tokens.verify(old)


def test_letters_sent_before_a_key_rotation_keep_working_until_the_old_key_is_dropped(http, settings):
    settings.ENGAGEMENT_TOKEN_KEYS = ["old-key"]
    project, _key = make_project()
    copy = track(project).copies[0]
    settings.ENGAGEMENT_TOKEN_KEYS = ["new-key", "old-key"]
    assert fetch(http, copy.pixel_url).content == GIF
    assert fetch(http, copy.links[0][1])["Location"] == "https://shop.test/price"
    assert [e.kind for e in events_of(copy)] == [EventKind.OPEN, EventKind.CLICK]
    settings.ENGAGEMENT_TOKEN_KEYS = ["new-key"]
    assert fetch(http, copy.pixel_url).content == GIF  # still the GIF, recorded nowhere
    response = fetch(http, copy.links[0][1])
    assert response.status_code == 400 and "Location" not in response
    assert len(events_of(copy)) == 2


# --- Rewriting ----------------------------------------------------------------


def test_each_recipient_gets_their_own_pixel_and_links_and_the_rules_leave_the_rest():
    project, _key = make_project()
    tracked = track(project, recipients=["anna@client.test", "Boris@Client.test"])
    anna, boris = tracked.copies
    assert anna.pixel_url != boris.pixel_url and anna.links[0][1] != boris.links[0][1]
    assert [url for url, _t in anna.links] == [
        "https://shop.test/price",
        "https://shop.test/catalog?utm_source=mail&x=1",
    ]
    for copy in (anna, boris):
        assert copy.pixel_url in copy.html and all(tracked_url in copy.html for _u, tracked_url in copy.links)
        assert 'href="mailto:sales@shop.test"' in copy.html
        assert 'href="https://shop.test/unsubscribe" data-emailtrack-skip' in copy.html
        assert "https://shop.test/price" not in copy.html
    assert boris.email == "boris@client.test"


def test_links_in_style_comments_and_outlook_conditional_comments_are_left_alone():
    html = (
        "<html><head><style>.b{background:url(https://shop.test/bg.png)}</style></head><body>"
        '<!--[if mso]><v:roundrect href="https://shop.test/vml"><w:anchorlock/></v:roundrect><![endif]-->'
        '<!-- <a href="https://shop.test/commented">x</a> -->'
        '<![if !mso]><a href="https://shop.test/button">Buy</a><![endif]>'
        '<a href="#top">Top</a><a href="tel:+7000">Call</a><a href="javascript:alert(1)">x</a>'
        '<a href="ftp://shop.test/f">f</a><a href="relative/page">r</a><a href="{{unsubscribe_url}}">u</a>'
        "</body></html>"
    )
    template = rewriting.prepare(html)
    assert template.links == ["https://shop.test/button"]
    rendered = template.render(link_urls=["T"], pixel_url="P", honeypot_url="H")
    for kept in (
        "url(https://shop.test/bg.png)",
        'href="https://shop.test/vml"',
        "https://shop.test/commented",
        'href="#top"',
        'href="tel:+7000"',
        'href="relative/page"',
        'href="{{unsubscribe_url}}"',
    ):
        assert kept in rendered


def test_base_href_makes_relative_links_trackable():
    template = rewriting.prepare('<base href="https://shop.test/news/"><a href="item?id=5&amp;a=b">x</a>')
    assert template.links == ["https://shop.test/news/item?id=5&a=b"]


@pytest.mark.parametrize(
    "html",
    [
        "<p>No body at all <a href='https://shop.test/a'>a</a>",
        "<html><body><a href='https://shop.test/a'>unclosed <div><table><tr><td>",
        '<a href=https://shop.test/a>no quotes</a><a href="https://shop.test/b',
        "<<<>>><a <a href='https://shop.test/a'>x</a></b></i><!-- never closed",
        "\x00\ud800 <a href='https://шоп.рф/путь'>unicode</a>",
        "",
    ],
)
def test_malformed_html_is_never_lost(html):
    template = rewriting.prepare(html)
    rendered = template.render(link_urls=["T"] * len(template.links), pixel_url="P", honeypot_url="H")
    stripped = rendered
    for url in template.links:
        assert url not in rendered
    # Taking our additions out gives the letter back.
    stripped = rendered.replace('"T"', "LINK")
    assert len(stripped) >= len(html) - sum(len(u) for u in template.links) - 10 * len(template.links)
    assert 'src="P"' in rendered


def test_a_letter_over_the_cap_is_refused_clearly(settings):
    project, _key = make_project()
    settings.ENGAGEMENT_MAX_HTML_BYTES = 1000
    with pytest.raises(EngagementError) as error:
        track(project, html="<p>" + "x" * 2000)
    assert error.value.status == 413


def test_tracking_off_and_opted_out_recipients_get_nothing_tracked():
    off, _key = make_project("Off", tracking=False)
    with pytest.raises(EngagementError) as error:
        track(off)
    assert error.value.code == "tracking_off"
    project, _key = make_project()
    OptOut.objects.create(project=project, email="boris@client.test")
    tracked = track(project, recipients=["anna@client.test", "BORIS@client.test"])
    boris = tracked.copies[1]
    assert boris.recipient is None and boris.html == LETTER and boris.pixel_url is None
    assert list(MessageRecipient.objects.values_list("email", flat=True)) == ["anna@client.test"]


# --- Endpoints ----------------------------------------------------------------


def test_the_pixel_is_the_spec_complete_gif_with_no_store_for_any_token(http):
    assert len(GIF) == 43 and GIF.startswith(b"GIF89a") and GIF.endswith(b"\x3b")
    project, _key = make_project()
    copy = track(project).copies[0]
    for url in (copy.pixel_url, "/t/o/forged-token.gif", "/t/o/x.gif"):
        response = fetch(http, url)
        assert response.status_code == 200 and response.content == GIF
        assert response["Content-Type"] == "image/gif"
        assert "no-store" in response["Cache-Control"] and response["Pragma"] == "no-cache"
    assert [e.kind for e in events_of(copy)] == [EventKind.OPEN]  # the forged ones recorded nowhere


def test_a_click_redirects_to_the_link_and_a_forged_token_is_a_400_page(http):
    project, _key = make_project()
    copy = track(project).copies[0]
    response = fetch(http, copy.links[1][1])
    assert response.status_code == 302
    assert response["Location"] == "https://shop.test/catalog?utm_source=mail&x=1"
    forged = copy.links[1][1][:-3] + ("AAA" if not copy.links[1][1].endswith("AAA") else "BBB")
    for url in (
        forged,
        "/t/c/https%3A%2F%2Fevil.test",
        "/t/c/" + "A" * 60,
        copy.pixel_url.replace("/t/o/", "/t/c/")[:-4],
    ):
        response = fetch(http, url)
        assert response.status_code == 400, url
        assert "Location" not in response and b"not valid" in response.content
    assert [(e.kind, e.inferred) for e in events_of(copy)] == [(EventKind.OPEN, True), (EventKind.CLICK, False)]


@pytest.mark.parametrize(
    ("href", "location"),
    [
        ("https://пример.рф/путь?q=да", "https://xn--e1afmkfd.xn--p1ai/%D0%BF%D1%83%D1%82%D1%8C?q=%D0%B4%D0%B0"),
        ("https://ПРИМЕР.Рф/путь", "https://xn--e1afmkfd.xn--p1ai/%D0%BF%D1%83%D1%82%D1%8C"),
        ("https://user@Пример.рф:8443/", "https://user@xn--e1afmkfd.xn--p1ai:8443/"),
    ],
)
def test_a_click_on_a_unicode_domain_redirects_to_its_ascii_form(http, href, location):
    project, _key = make_project()
    copy = track(project, html=f'<a href="{href}">x</a>').copies[0]
    response = fetch(http, copy.links[0][1])
    assert response.status_code == 302 and response["Location"] == location


def test_a_token_signed_for_another_letters_link_is_refused(client):
    project, _key = make_project()
    mine = track(project).copies[0]
    theirs_project, _k = make_project("Other")
    theirs = track(theirs_project).copies[0]
    other_link = (
        Event._meta.apps.get_model("engagement", "Link").objects.filter(message=theirs.recipient.message).first()
    )
    crafted = tokens.click_url(mine.recipient.pk, other_link.pk)
    response = fetch(client, crafted)  # signed by us, so answered, but never recorded on either letter
    assert response.status_code == 302
    assert events_of(mine) == [] and events_of(theirs) == []


def test_a_signed_token_for_a_link_that_does_not_exist_is_a_400_page(http):
    project, _key = make_project()
    copy = track(project).copies[0]
    unknown = tokens.click_url(copy.recipient.pk, 2**40)
    response = fetch(http, unknown)
    assert response.status_code == 400 and "Location" not in response
    assert events_of(copy) == []


def test_head_is_answered_but_never_counted_as_a_person(http):
    project, _key = make_project()
    copy = track(project).copies[0]
    assert fetch(http, copy.links[0][1], method="head").status_code == 302
    assert fetch(http, copy.pixel_url, method="head").status_code == 200
    events = events_of(copy)
    assert {(e.kind, e.verdict, e.method) for e in events} == {
        (EventKind.CLICK, Verdict.SCANNER, "HEAD"),
        (EventKind.OPEN, Verdict.SCANNER, "HEAD"),
    }
    copy.recipient.refresh_from_db()
    assert copy.recipient.open_state == OpenState.MACHINE


def test_other_methods_are_405(http):
    project, _key = make_project()
    copy = track(project).copies[0]
    assert fetch(http, copy.pixel_url, method="post").status_code == 405
    assert fetch(http, copy.links[0][1], method="put").status_code == 405
    assert events_of(copy) == []


# --- Verdicts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ua", "ip", "verdict", "probable"),
    [
        (GMAIL_PROXY_UA, "66.249.84.10", Verdict.GMAIL_PROXY, False),
        (GMAIL_PREFETCH_UA, "66.249.84.10", Verdict.GMAIL_PREFETCH, False),
        (YAHOO_UA, "98.136.0.1", Verdict.YAHOO_PROXY, False),
        ("Mozilla/5.0", APPLE_IP, Verdict.APPLE_MPP, False),
        ("Mozilla/5.0", PERSON_IP, Verdict.UNKNOWN, False),
        (CHROME_UA, EOP_IP, Verdict.SCANNER, False),
        (CHROME_UA, "2a01:111:f400:7e00::1", Verdict.SCANNER, False),
        (CHROME_UA, "64.235.150.1", Verdict.SCANNER, False),  # Barracuda
        (CHROME_UA, PROOFPOINT_IP, Verdict.SCANNER, True),
        ("", PERSON_IP, Verdict.SCANNER, False),
        ("Googlebot/2.1 (+http://www.google.com/bot.html)", PERSON_IP, Verdict.UNKNOWN, False),
        (IPHONE_UA, APPLE_IP, Verdict.HUMAN, False),  # a Safari user behind Private Relay
        (IPHONE_UA, PERSON_IP, Verdict.HUMAN, False),
    ],
)
def test_each_open_gets_its_verdict(client, ua, ip, verdict, probable):
    project, _key = make_project()
    copy = track(project).copies[0]
    fetch(client, copy.pixel_url, ua=ua, ip=ip)
    [event] = events_of(copy)
    assert (event.verdict, event.probable) == (verdict, probable)
    assert event.ip_truncated == truncate_ip(ip)
    assert event.user_agent == ua


def test_a_person_open_keeps_its_device_and_upgrades_the_recipient(client):
    project, _key = make_project()
    copy = track(project).copies[0]
    fetch(client, copy.pixel_url, ua=IPHONE_UA)
    [event] = events_of(copy)
    assert event.device_type == "mobile"
    copy.recipient.refresh_from_db()
    assert copy.recipient.open_state == OpenState.PERSON and copy.recipient.first_opened_at == event.at


def test_a_human_click_after_a_machine_open_upgrades_the_recipient_with_an_inferred_open(http):
    project, _key = make_project()
    copy = track(project).copies[0]
    fetch(http, copy.pixel_url, ua="Mozilla/5.0", ip=APPLE_IP)
    events_of(copy)
    copy.recipient.refresh_from_db()
    assert copy.recipient.open_state == OpenState.MACHINE
    response = fetch(http, copy.links[0][1], ua=CHROME_UA)
    assert response["Location"] == "https://shop.test/price"
    events = events_of(copy)
    assert [(e.kind, e.verdict, e.inferred) for e in events] == [
        (EventKind.OPEN, Verdict.APPLE_MPP, False),
        (EventKind.OPEN, Verdict.HUMAN, True),
        (EventKind.CLICK, Verdict.HUMAN, False),
    ]
    copy.recipient.refresh_from_db()
    assert copy.recipient.open_state == OpenState.INFERRED
    fetch(http, copy.pixel_url, ua=CHROME_UA)
    events_of(copy)
    copy.recipient.refresh_from_db()
    assert copy.recipient.open_state == OpenState.PERSON
    assert Event.objects.filter(recipient=copy.recipient).count() == 4  # nothing deleted


def test_a_burst_of_clicks_on_several_links_is_a_scanner(client):
    project, _key = make_project()
    copy = track(project).copies[0]
    fetch(client, copy.links[0][1])
    fetch(client, copy.links[1][1])
    events = events_of(copy)
    clicks = [e for e in events if e.kind == EventKind.CLICK]
    assert [e.verdict for e in clicks] == [Verdict.SCANNER, Verdict.SCANNER]
    assert all("burst" in e.reason for e in clicks)
    assert not any(e.inferred for e in events)


def test_the_same_link_clicked_twice_is_not_a_burst(client):
    project, _key = make_project()
    copy = track(project).copies[0]
    fetch(client, copy.links[0][1])
    fetch(client, copy.links[0][1])
    assert {e.verdict for e in events_of(copy) if e.kind == EventKind.CLICK} == {Verdict.HUMAN}


def test_a_honeypot_hit_marks_the_clicks_around_it_as_a_scanners(client):
    project, _key = make_project()
    copy = track(project).copies[0]
    honeypot = tokens.honeypot_url(copy.recipient.pk)
    assert honeypot in copy.html
    fetch(client, copy.links[0][1])
    events_of(copy)  # stored before the hidden link is hit: relabelled afterwards
    assert fetch(client, honeypot).status_code == 302
    fetch(client, copy.links[0][1])
    events = events_of(copy)
    assert [(e.kind, e.verdict) for e in events if not e.inferred] == [
        (EventKind.CLICK, Verdict.SCANNER),
        (EventKind.HONEYPOT, Verdict.SCANNER),
        (EventKind.CLICK, Verdict.SCANNER),
    ]
    # The open the first click inferred is withdrawn with it: kept, labelled, never counted.
    assert [(e.kind, e.verdict) for e in events if e.inferred] == [(EventKind.OPEN, Verdict.SCANNER)]
    copy.recipient.refresh_from_db()
    assert copy.recipient.open_state == OpenState.NONE
    assert selectors.totals([copy.recipient.message_id])[copy.recipient.message_id]["opens"]["inferred"] == 0


def test_a_burst_found_after_its_first_click_was_drained_withdraws_the_inferred_open(client):
    project, _key = make_project()
    copy = track(project).copies[0]
    fetch(client, copy.pixel_url, ua="Mozilla/5.0", ip=APPLE_IP)
    fetch(client, copy.links[0][1])
    events_of(copy)
    copy.recipient.refresh_from_db()
    assert copy.recipient.open_state == OpenState.INFERRED  # a person's click, as far as is known yet
    fetch(client, copy.links[1][1])  # the next link within the burst window: a scanner after all
    events = events_of(copy)
    assert {e.verdict for e in events if e.kind == EventKind.CLICK} == {Verdict.SCANNER}
    [withdrawn] = [e for e in events if e.inferred]
    assert withdrawn.verdict == Verdict.SCANNER and "scanner" in withdrawn.reason
    copy.recipient.refresh_from_db()
    assert copy.recipient.open_state == OpenState.MACHINE  # Apple's open is all that is left
    figures = selectors.totals([copy.recipient.message_id])[copy.recipient.message_id]
    assert (figures["opens"]["inferred"], figures["clicks"]["human"]) == (0, 0)
    # A person's click later infers an open again.
    Event.objects.filter(recipient=copy.recipient).update(at=timezone.now() - timedelta(minutes=5))
    fetch(client, copy.links[0][1])
    events = events_of(copy)
    assert [e.verdict for e in events if e.inferred] == [Verdict.SCANNER, Verdict.HUMAN]
    copy.recipient.refresh_from_db()
    assert copy.recipient.open_state == OpenState.INFERRED
    assert Event.objects.filter(recipient=copy.recipient).count() == 6  # nothing deleted


def test_a_person_click_left_beside_the_scanners_keeps_the_inferred_open(client):
    project, _key = make_project()
    copy = track(project).copies[0]
    fetch(client, copy.links[0][1])
    events_of(copy)
    Event.objects.filter(recipient=copy.recipient).update(at=timezone.now() - timedelta(minutes=5))
    fetch(client, copy.links[0][1])
    events_of(copy)
    fetch(client, tokens.honeypot_url(copy.recipient.pk))  # marks the second click only
    events = events_of(copy)
    assert [e.verdict for e in events if e.kind == EventKind.CLICK] == [Verdict.HUMAN, Verdict.SCANNER]
    assert [e.verdict for e in events if e.inferred] == [Verdict.HUMAN]
    copy.recipient.refresh_from_db()
    assert copy.recipient.open_state == OpenState.INFERRED


def test_the_senders_own_open_through_the_relay_is_self_only_in_the_first_minutes(client):
    project, _key = make_project()
    copy = track(project, origin="relay", client_ip="198.51.100.23").copies[0]
    fetch(client, copy.pixel_url, ip="198.51.100.99")
    [event] = events_of(copy)
    assert event.verdict == Verdict.SELF
    copy.recipient.message.__class__.objects.filter(pk=copy.recipient.message_id).update(
        created_at=timezone.now() - timedelta(hours=1)
    )
    fetch(client, copy.pixel_url, ip="198.51.100.99")
    assert events_of(copy)[-1].verdict == Verdict.HUMAN


# --- Network lists --------------------------------------------------------------


def test_a_loaded_list_replaces_the_shipped_one(client, tmp_path):
    assert networks.shipped_published("apple_mpp") is not None
    csv = tmp_path / "egress.csv"
    csv.write_text("# Apple\n192.0.2.0/24,US,US-CA,Cupertino,\n2001:db8::/32,US,US-CA,Cupertino,\n")
    out = io.StringIO()
    call_command(
        "load_network_list", "apple_mpp", str(csv), "--source", "test feed", "--published", "2026-12-01", stdout=out
    )
    assert "2 networks" in out.getvalue()
    assert NetworkList.objects.get(kind="apple_mpp").source == "test feed"
    project, _key = make_project()
    copy = track(project).copies[0]
    fetch(client, copy.pixel_url, ua="Mozilla/5.0", ip="192.0.2.9")
    fetch(client, copy.pixel_url, ua="Mozilla/5.0", ip=APPLE_IP)  # no longer listed
    assert [e.verdict for e in events_of(copy)] == [Verdict.APPLE_MPP, Verdict.UNKNOWN]


def test_a_bad_list_loads_nothing(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("10.0.0.0/8\nnot-a-network\n")
    with pytest.raises(Exception, match="Line 2"):
        call_command("load_network_list", "scanner", str(bad))
    assert not NetworkList.objects.exists()
