"""Rule conditions. Patterns are RE2 (linear time, no backtracking), so a
manager's regular expression can never stall the collect endpoint."""

from dataclasses import dataclass
from functools import lru_cache

import re2

from .models import REGEX_MAX_LENGTH

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


@dataclass(frozen=True)
class Visit:
    """What rule conditions look at: the visitor's current session."""

    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    utm_term: str = ""
    utm_content: str = ""
    referrer_domain: str = ""
    landing_url: str = ""
    channel: str = ""
    device_type: str = ""


def condition_holds(field: str, operator: str, value: str, negate: bool, visit: Visit) -> bool:
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


def rule_matches(conditions, visit: Visit) -> bool:
    """All conditions must hold; a rule without conditions matches every visit."""
    return all(condition_holds(c.field, c.operator, c.value, c.negate, visit) for c in conditions)
