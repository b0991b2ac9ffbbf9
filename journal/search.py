"""Search in the journal: by sender (address or name) or subject.

A whole address finds that sender's leads (an exact match on an indexed
column). Anything else is a case-insensitive part of the sender's address or
name or of the subject, found through trigram indexes on PostgreSQL.

A trigram index finds a part by intersecting the lists of rows that hold each
of its three-letter pieces. A piece that nearly every row holds ("cli" when
every address starts with "client", "mai" of "gmail") has a list as long as
the table, and reading it costs the same whether the part is rare or not: a
search for "client1234@" would read every lead's entry. So the index is asked
only for the longest stretch of the text whose pieces are rare, and the whole
text is checked on the few rows that stretch finds. Which pieces are common
is read from PostgreSQL's own sample of each column (`pg_stats`, refreshed by
autovacuum), so it follows the data without a list kept by hand.
"""

import time

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DatabaseError, connection
from django.db.models import F, Q, Value
from django.db.models.functions import StrIndex, Upper
from django.db.models.lookups import GreaterThan

from attribution.models import Lead

SEARCHED = ("sender_email", "sender_name", "subject")
# A piece held by more than this share of the sample is common.
COMMON_SHARE = 0.05
# The sample changes only when the table is analysed; read it at most this often.
SAMPLE_SECONDS = 600
GRAM = 3

_samples: dict[str, tuple[float, list[tuple[str, float]]]] = {}

SAMPLE_SQL = """
SELECT most_common_vals::text::text[], most_common_freqs, histogram_bounds::text::text[], null_frac
FROM pg_stats
WHERE schemaname = current_schema() AND tablename = %s AND attname = %s
"""


def column_sample(column: str) -> list[tuple[str, float]]:
    """Values of a lead column with the share of rows each stands for: the
    most common values with their frequencies, and the histogram's bounds
    sharing the rest. Empty on a database without such statistics."""
    now = time.monotonic()
    cached = _samples.get(column)
    if cached is not None and now - cached[0] < SAMPLE_SECONDS:
        return cached[1]
    sample: list[tuple[str, float]] = []
    if connection.vendor == "postgresql":
        try:
            with connection.cursor() as cursor:
                cursor.execute(SAMPLE_SQL, [Lead._meta.db_table, column])
                row = cursor.fetchone()
        except DatabaseError:
            row = None
        if row is not None:
            common, freqs, bounds, null_frac = row
            common, freqs, bounds = common or [], freqs or [], bounds or []
            sample = [(value.upper(), share) for value, share in zip(common, freqs, strict=False)]
            if bounds:
                rest = max(0.0, 1.0 - (null_frac or 0.0) - sum(freqs))
                sample += [(value.upper(), rest / len(bounds)) for value in bounds]
    _samples[column] = (now, sample)
    return sample


def forget_column_samples() -> None:
    """Read the samples afresh on the next search (after an ANALYZE, in tests)."""
    _samples.clear()


def rare_stretch(text: str, sample: list[tuple[str, float]]) -> str:
    """The longest part of `text` (at least GRAM characters) all of whose
    GRAM-character pieces are rare in `sample`; `text` itself when every
    piece is rare, when none is, or when there is no sample to judge by."""
    upper = text.upper()
    if not sample or len(upper) <= GRAM:
        return text
    rare = [
        sum(share for value, share in sample if upper[i : i + GRAM] in value) <= COMMON_SHARE
        for i in range(len(upper) - GRAM + 1)
    ]
    best_start, best_len, start = 0, 0, None
    for i, is_rare in enumerate([*rare, False]):
        if is_rare and start is None:
            start = i
        elif not is_rare and start is not None:
            if i - start > best_len:
                best_start, best_len = start, i - start
            start = None
    if best_len == 0 or best_len == len(rare):
        return text
    return text[best_start : best_start + best_len + GRAM - 1]


def contains(column: str, text: str) -> Q:
    """Rows whose `column` holds `text`, case-insensitively. The index is
    asked for the rare stretch only; the whole text is checked with strpos,
    which no index serves, so the planner cannot add its common pieces back."""
    stretch = rare_stretch(text, column_sample(column))
    if stretch == text:
        return Q(**{f"{column}__icontains": text})
    whole = StrIndex(Upper(F(column)), Upper(Value(text)))
    return Q(**{f"{column}__icontains": stretch}) & Q(GreaterThan(whole, 0))


def search(text: str) -> Q:
    """A whole address finds exactly that sender; anything else is a part of
    the sender's address or name or of the subject."""
    try:
        validate_email(text)
    except ValidationError:
        query = Q()
        for column in SEARCHED:
            query |= contains(column, text)
        return query
    return Q(sender_email=text.lower())
