"""The shipped network lists: each names its sources and date; Mimecast's
published networks are in the probable scanners' list (a click from one is a
scanner's, marked probable), the people's test address is in none."""

import time

import pytest

from engagement import networks, storing, tokens
from engagement.models import Event, EventKind, NetworkKind, Verdict
from tests.engagement_fixtures import CHROME_UA, make_project, track

pytestmark = pytest.mark.django_db

# Mimecast's published ranges, one per region (_netblocks.mimecast.com), and
# addresses its delivery hosts were seen using in public mail headers.
MIMECAST = [
    "195.130.217.10",  # eu
    "205.139.110.61",  # us-smtp-1.mimecast.com
    "170.10.129.124",  # us-smtp-delivery-124.mimecast.com
    "41.74.193.1",  # za
    "194.104.109.102",  # de-smtp-delivery-102.mimecast.com
    "103.96.21.5",  # au
    "170.10.145.9",  # ca
    "185.58.86.151",  # eu-smtp-delivery-151.mimecast.com
]


def test_each_shipped_list_names_its_sources_and_date():
    for kind in NetworkKind.values:
        text = networks.shipped_text(kind)
        assert "https://" in text or "support page" in text or ".com" in text, kind
        assert networks.shipped_published(kind) is not None, kind


def test_mimecasts_published_networks_are_probable_scanners_and_nothing_else():
    lists = networks.lists()
    for ip in MIMECAST:
        assert ip in lists[NetworkKind.SCANNER_PROBABLE], ip
        assert ip not in lists[NetworkKind.SCANNER] and ip not in lists[NetworkKind.APPLE_MPP], ip
    assert "203.0.113.77" not in lists[NetworkKind.SCANNER_PROBABLE]
    assert "_netblocks.mimecast.com" in networks.shipped_text(NetworkKind.SCANNER_PROBABLE)


def test_a_click_from_mimecast_is_a_scanners_marked_probable():
    project, _key = make_project()
    copy = track(project).copies[0]
    link = copy.recipient.message.links.order_by("position").first()
    fields = {"k": tokens.CLICK, "r": copy.recipient.pk, "l": link.pk, "m": "GET", "u": CHROME_UA}
    storing.store(
        [("1-1", {**{k: str(v) for k, v in fields.items()}, "i": "205.139.110.61", "t": f"{time.time():.3f}"})]
    )
    event = Event.objects.get(recipient=copy.recipient, kind=EventKind.CLICK)
    assert (event.verdict, event.probable, event.reason) == (Verdict.SCANNER, True, "probable scanner network")
