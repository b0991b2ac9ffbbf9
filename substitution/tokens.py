"""Tokens of generated addresses: short, lowercase, no look-alike characters
(no 0, o, 1, l, i), and any two in a pool at least MIN_DISTANCE edits apart
(a transposition of neighbours counts as one edit), so one typo never turns
one issued token into another.

Generation is random with rejection, against an index that answers "is
anything issued within two edits?" in a constant number of set look-ups.
Between two strings of the same length, two edits are one of: up to two
substitutions (Hamming distance <= 2), a transposition plus a substitution, two
transpositions, or a deletion plus an insertion. Each has its own keys below.
The check is exact or stricter, never looser.
"""

import secrets
from itertools import combinations

ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
MIN_DISTANCE = 3
WILD = "*"


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (Damerau-Levenshtein, adjacent transpositions)."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            row[j] = min(rows[i - 1][j] + 1, row[j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[i - 2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def token_length(pool_size: int) -> int:
    """Short tokens for small pools. Random packing fits about 650 four-character
    and 12,800 five-character tokens; a third of that keeps generation quick."""
    for length, capacity in ((4, 200), (5, 4_000), (6, 60_000)):
        if pool_size <= capacity:
            return length
    return 7


def _wild1(token: str):
    return {"1" + token[:i] + WILD + token[i + 1 :] for i in range(len(token))}


def _wild2(token: str):
    keys = set()
    for i, j in combinations(range(len(token)), 2):
        keys.add("2" + token[:i] + WILD + token[i + 1 : j] + WILD + token[j + 1 :])
    return keys


def _deletions(token: str):
    return {"d" + token[:i] + token[i + 1 :] for i in range(len(token))}


def _transpositions(token: str):
    return {token[:i] + token[i + 1] + token[i] + token[i + 2 :] for i in range(len(token) - 1)}


class TokenIndex:
    """The issued tokens of one length, indexed for the two-edit check."""

    def __init__(self, issued=()):
        self.exact: set[str] = set()
        self.keys: set[str] = set()
        for token in issued:
            self.add(token)

    def add(self, token: str) -> None:
        self.exact.add(token)
        self.keys |= _wild1(token) | _wild2(token) | _deletions(token)

    def near(self, candidate: str) -> bool:
        """True when some issued token is within two edits of `candidate`."""
        if candidate in self.exact:
            return True
        if len(candidate) >= 2 and not _wild2(candidate).isdisjoint(self.keys):
            return True  # up to two substitutions, or one transposition
        if not _deletions(candidate).isdisjoint(self.keys):
            return True  # a deletion plus an insertion
        for swapped in _transpositions(candidate):
            if not _wild1(swapped).isdisjoint(self.keys) or swapped in self.exact:
                return True  # a transposition plus a substitution
            if not _transpositions(swapped).isdisjoint(self.exact):
                return True  # two transpositions
        return False


def new_tokens(count: int, existing: list[str], length: int, attempts_per_token: int = 2000) -> list[str]:
    """`count` fresh tokens of `length`, each at least MIN_DISTANCE edits from
    every other and from `existing` (of any length)."""
    same = [t for t in existing if len(t) == length]
    # Tokens one character shorter or longer can be two edits away too; few
    # pools have them (only after a resize), so they are checked directly.
    other = [t for t in existing if abs(len(t) - length) <= 2 and len(t) != length]
    index = TokenIndex(same)
    fresh = []
    for _ in range(count):
        for _attempt in range(attempts_per_token):
            candidate = "".join(secrets.choice(ALPHABET) for _ in range(length))
            if index.near(candidate):
                continue
            if any(edit_distance(candidate, t) < MIN_DISTANCE for t in other):
                continue
            index.add(candidate)
            fresh.append(candidate)
            break
        else:
            raise ValueError(
                f"No room for more {length}-character tokens in this pool; create a new pool for more addresses."
            )
    return fresh
