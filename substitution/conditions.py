"""Rule conditions. Patterns are RE2 (linear time, no backtracking), so a
manager's regular expression can never stall the collect endpoint.

A schedule condition's value is days of the week and, optionally, hours:
"mon-fri 09:00-18:00", "sat,sun", "mon-sun 22:00-06:00" (over midnight); it
holds when the visit's time in the project's time zone falls inside."""

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import re2

REGEX_MAX_LENGTH = 200
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SCHEDULE_RE = re.compile(
    r"\A\s*(?P<days>[a-z]{3}(?:\s*-\s*[a-z]{3})?(?:\s*,\s*[a-z]{3}(?:\s*-\s*[a-z]{3})?)*)"
    r"(?:\s+(?P<start>\d{1,2}(?::\d{2})?)\s*-\s*(?P<end>\d{1,2}(?::\d{2})?))?\s*\Z"
)

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_OPTIONS.max_mem = 1 << 20


def compile_pattern(pattern: str):
    """A compiled pattern, or ValueError with a message fit for the admin form."""
    if len(pattern) > REGEX_MAX_LENGTH:
        raise ValueError(f"The pattern is longer than {REGEX_MAX_LENGTH} characters.")
    try:
        return _compiled(pattern)
    except re2.error as error:
        message = error.args[0] if error.args else error
        if isinstance(message, bytes):
            message = message.decode(errors="replace")
        raise ValueError(f"Not a valid regular expression: {message}") from None


@lru_cache(maxsize=1024)
def _compiled(pattern: str):
    return re2.compile(pattern, _OPTIONS)


def _minutes(text: str) -> int:
    hours, _, minutes = text.partition(":")
    value = int(hours) * 60 + int(minutes or 0)
    if int(hours) > 24 or int(minutes or 0) > 59 or value > 24 * 60:
        raise ValueError(f"Not a time of day: {text}")
    return value


@lru_cache(maxsize=256)
def parse_schedule(value: str) -> tuple[frozenset, int, int]:
    """(days of the week as 0-6, first minute, end minute) of a schedule, or
    ValueError with a message fit for the admin form."""
    match = _SCHEDULE_RE.match(value.lower())
    if match is None:
        raise ValueError('Write days and hours, e.g. "mon-fri 09:00-18:00" or "sat,sun".')
    days = set()
    for part in match.group("days").split(","):
        first, _, last = (word.strip() for word in part.partition("-"))
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"Not a day of the week: {part.strip()} (use {', '.join(DAYS)})")
        start, end = DAYS.index(first), DAYS.index(last or first)
        days.update(range(start, end + 1) if start <= end else [*range(start, 7), *range(0, end + 1)])
    start = _minutes(match.group("start")) if match.group("start") else 0
    end = _minutes(match.group("end")) if match.group("end") else 24 * 60
    return frozenset(days), start, end


def in_schedule(value: str, at: datetime | None) -> bool:
    if at is None:
        return False
    days, start, end = parse_schedule(value)
    minute = at.hour * 60 + at.minute
    if start <= end:
        return at.weekday() in days and start <= minute < end
    # Over midnight: the evening belongs to the listed day, the morning to the day after it.
    if minute >= start:
        return at.weekday() in days
    return minute < end and (at.weekday() - 1) % 7 in days


@dataclass(frozen=True)
class Visit:
    """What rule conditions look at: the visitor's current session, the page
    being viewed, where the visitor is, and when (in the project's time zone)."""

    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    utm_term: str = ""
    utm_content: str = ""
    referrer_domain: str = ""
    landing_url: str = ""
    page_url: str = ""
    channel: str = ""
    device_type: str = ""
    country: str = ""
    region: str = ""
    city: str = ""
    local_time: datetime | None = None


def condition_holds(field: str, operator: str, value: str, negate: bool, visit: Visit) -> bool:
    if field == "schedule":
        try:
            return in_schedule(value, visit.local_time) != negate
        except ValueError:
            return False  # a schedule that slipped past validation never matches
    actual = (getattr(visit, field, "") or "").lower()
    expected = value.lower()
    if operator == "equals":
        result = actual == expected
    elif operator == "contains":
        result = expected in actual
    else:
        try:
            result = compile_pattern(value).search(getattr(visit, field, "") or "") is not None
        except ValueError:
            result = False  # a pattern that slipped past validation never matches
    return result != negate
