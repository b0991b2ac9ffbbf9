"""`AnyOf`: a batch's values as one array parameter, matching exactly what
`__in` matches: none for no values, a value longer than its column never
cut down to match a stored one, across a join, and any number of values in
one placeholder."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from lib.lookups import AnyOf
from mailbox_sync.models import Letter
from mailbox_sync.services import store_letter
from tests.factories import letter_bytes, make_setup

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def letters(db):
    setup = make_setup()
    stored = [
        store_letter(
            mailbox=setup.mailbox,
            raw=letter_bytes(to="info@shop.test", sender=f"c{n}@client.test", message_id=f"<m{n}@client.test>"),
            received_at=T0,
        )
        for n in range(3)
    ]
    return setup, stored


def ids(queryset) -> set[int]:
    return set(queryset.values_list("id", flat=True))


def test_it_matches_what_in_matches(letters):
    setup, stored = letters
    senders = ["c0@client.test", "c2@client.test", "nobody@client.test"]
    assert ids(Letter.objects.filter(AnyOf("sender_email", senders))) == ids(
        Letter.objects.filter(sender_email__in=senders)
    )
    assert ids(Letter.objects.filter(AnyOf("id", [stored[1].pk, 10**12]))) == {stored[1].pk}
    across_join = Letter.objects.filter(AnyOf("mailbox__project_id", [setup.project.pk]))
    assert ids(across_join) == {letter.pk for letter in stored}
    assert ids(Letter.objects.filter(AnyOf("id", []))) == set()


def test_a_value_longer_than_its_column_is_not_cut_down_to_match(letters):
    _setup, stored = letters
    longer = stored[0].message_id + "x" * 2000
    assert ids(Letter.objects.filter(AnyOf("message_id", [longer]))) == set()
    assert ids(Letter.objects.filter(AnyOf("message_id", [longer, stored[0].message_id]))) == {stored[0].pk}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="elsewhere an IN list")
def test_thousands_of_values_are_one_parameter(letters):
    _setup, stored = letters
    values = [f"c{n}@client.test" for n in range(5000)]
    with CaptureQueriesContext(connection) as queries:
        assert ids(Letter.objects.filter(AnyOf("sender_email", values))) == {letter.pk for letter in stored}
    assert "= ANY(" in queries.captured_queries[0]["sql"]
    assert queries.captured_queries[0]["sql"].count("'") == 2  # one quoted array literal
