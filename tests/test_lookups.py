"""`AnyOf`: a batch's values as one array parameter, matching exactly what
`__in` matches: none for no values, a value longer than its column never
cut down to match a stored one, across a join, and any number of values in
one placeholder, sent as one array literal that PostgreSQL reads back
exactly as given, whatever its characters."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from lib import lookups
from lib.lookups import AnyOf, array_literal, array_param
from mailbox_sync.models import Letter
from mailbox_sync.services import store_letter
from tests.factories import letter_bytes, make_setup

pytestmark = pytest.mark.django_db

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="an IN list elsewhere")
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
    message_ids = [stored[0].message_id, stored[2].message_id]
    assert ids(Letter.objects.filter(AnyOf("message_id", message_ids))) == {stored[0].pk, stored[2].pk}
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


AWKWARD_TEXTS = [
    "",
    "plain@client.test",
    'a "quoted" word',
    'back\\slash and \\" both',
    "{braces}, commas, and spaces ",
    "NULL",
    "  leading",
    "Заявка на кирпич",
    "\t\ttabs\nand a newline",
    "'single' quotes",
]


def read_back(sql_type: str, values):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT %s::{sql_type}[]", [array_param(values)])
        return cursor.fetchone()[0]


def test_literals_of_ints_and_texts():
    assert array_literal([3, 1, 2]) == "{3,1,2}"
    assert array_literal(["a", "b"]) == '{"a","b"}'
    assert array_literal(['say "hi"', "a\\b"]) == '{"say \\"hi\\"","a\\\\b"}'
    assert array_literal([5, None]) == "{5,NULL}"
    assert array_literal([]) == "{}"


def test_texts_without_quotes_or_backslashes_are_joined_without_escaping_each(monkeypatch):
    quoted = []
    monkeypatch.setattr(lookups, "_quoted", lambda value: quoted.append(value) or '"' + value + '"')
    assert array_literal(["a@b.test", "", "c d"]) == '{"a@b.test","","c d"}'
    assert quoted == []
    array_literal(["a@b.test", 'say "hi"'])
    assert quoted == ["a@b.test", 'say "hi"']


def test_other_values_are_left_to_psycopg():
    when = datetime(2025, 1, 1, tzinfo=UTC)
    assert array_literal([when]) is None
    assert array_literal([True, False]) is None  # booleans are ints to Python, not to PostgreSQL
    assert array_param([when]) == [when]


@postgres_only
def test_postgresql_reads_back_every_text_as_it_was():
    assert read_back("text", AWKWARD_TEXTS) == AWKWARD_TEXTS
    assert read_back("text", AWKWARD_TEXTS[1:2] * 3) == AWKWARD_TEXTS[1:2] * 3
    assert read_back("text", ["a", None, 'b"']) == ["a", None, 'b"']


@postgres_only
def test_postgresql_reads_back_every_id_as_it_was():
    ids = [1, 2**62, 17, 9_999_999_999]
    assert read_back("bigint", ids) == ids
    assert read_back("bigint", [4, None, 6]) == [4, None, 6]


@postgres_only
def test_the_array_goes_as_one_text_parameter_not_a_list_of_values():
    queryset = Letter.objects.filter(AnyOf("sender_email", ["x@y.test", 'q"@y.test']))
    sql, params = queryset.query.sql_with_params()
    assert "= ANY(%s::text[])" in sql
    assert params[-1] == '{"x@y.test","q\\"@y.test"}'
