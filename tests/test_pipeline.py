"""The pipeline between apps: mailbox_sync announces "letters stored" and
attribution listens; mailbox_sync never imports attribution; one attribution
path, a single letter being a batch of one."""

import ast
from pathlib import Path

import pytest

from attribution import services as attribution_services
from attribution.models import Lead
from mailbox_sync import events
from mailbox_sync.models import Letter
from mailbox_sync.services import attribute_pending, ingest_raw, store_letter
from tests.factories import letter_bytes, make_setup

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(app: str) -> set[str]:
    """Every module an app's code imports, at any level of its files."""
    found = set()
    for path in (ROOT / app).rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
    return found


def test_it_keeps_mailbox_sync_free_of_imports_from_attribution():
    assert not {name for name in imported_modules("mailbox_sync") if name.split(".")[0] == "attribution"}


def test_it_keeps_attribution_to_one_path_with_no_letter_by_letter_rules():
    source = (ROOT / "attribution" / "services.py").read_text()
    assert "def lease_at" not in source and "def session_at" not in source
    assert attribution_services.attribute_letter.__module__ == "attribution.services"


@pytest.fixture
def heard():
    got = []
    events.subscribe_letters_stored(got.append)
    yield got
    events._stored_listeners.remove(got.append)


def test_it_announces_stored_letters_and_attribution_makes_their_lead(heard):
    setup = make_setup(original="info@shop.test")
    letter = ingest_raw(mailbox=setup.mailbox, raw=letter_bytes(to="info@shop.test", subject="Hello"))
    assert heard == [[letter.pk]]
    assert Letter.objects.get(pk=letter.pk).lead == Lead.objects.get()


def test_it_announces_nothing_for_the_same_letter_seen_again(heard):
    setup = make_setup(original="info@shop.test")
    raw = letter_bytes(to="info@shop.test", subject="Twice")
    ingest_raw(mailbox=setup.mailbox, raw=raw)
    assert ingest_raw(mailbox=setup.mailbox, raw=raw) is None
    assert len(heard) == 1 and Lead.objects.count() == 1


def test_it_announces_again_letters_a_crash_left_unattributed(heard):
    setup = make_setup(original="info@shop.test")
    letter = store_letter(mailbox=setup.mailbox, raw=letter_bytes(to="info@shop.test"), received_at=None)
    assert heard == [] and Letter.objects.get(pk=letter.pk).attributed_at is None
    assert attribute_pending(setup.mailbox) == 1
    assert heard == [[letter.pk]]
    assert Letter.objects.get(pk=letter.pk).lead is not None


def test_a_failing_letter_records_its_error_and_the_rest_of_the_batch_become_leads(monkeypatch):
    setup = make_setup(original="info@shop.test")
    good = store_letter(mailbox=setup.mailbox, raw=letter_bytes(to="info@shop.test", subject="Good"), received_at=None)
    bad = store_letter(mailbox=setup.mailbox, raw=letter_bytes(to="info@shop.test", subject="Bad"), received_at=None)
    real = attribution_services.attribute_letters

    def failing_on_bad(letter_ids):
        if bad.pk in letter_ids:
            raise RuntimeError("broken letter")
        return real(letter_ids)

    monkeypatch.setattr(attribution_services, "attribute_letters", failing_on_bad)
    attribute_pending(setup.mailbox)
    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.lead is not None
    assert (bad.lead, bad.attributed_at) == (None, None)
    assert bad.attribution_error == "RuntimeError: broken letter"


def test_a_single_letter_is_a_batch_of_one_and_attributing_it_again_keeps_its_lead():
    setup = make_setup(original="info@shop.test")
    letter = store_letter(mailbox=setup.mailbox, raw=letter_bytes(to="info@shop.test"), received_at=None)
    first = attribution_services.attribute_letter(letter.pk)
    assert first is not None and attribution_services.attribute_letter(letter.pk) == first
    assert Lead.objects.count() == 1
