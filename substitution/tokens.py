"""Tokens of generated addresses: short, lowercase, no look-alike characters
(no 0, o, 1, l, i), and any two in a pool at least MIN_DISTANCE edits apart,
where a transposition of neighbours counts as one edit, so one typo never
turns one issued token into another."""

import secrets

ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
MIN_DISTANCE = 3


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
    return 4 if pool_size <= 40 else 5 if pool_size <= 2000 else 6


def new_tokens(count: int, existing: list[str], length: int, attempts_per_token: int = 500) -> list[str]:
    """`count` fresh tokens, each MIN_DISTANCE edits from every other and from `existing`."""
    issued = list(existing)
    fresh = []
    for _ in range(count):
        for _attempt in range(attempts_per_token):
            candidate = "".join(secrets.choice(ALPHABET) for _ in range(length))
            if all(edit_distance(candidate, other) >= MIN_DISTANCE for other in issued):
                issued.append(candidate)
                fresh.append(candidate)
                break
        else:
            raise ValueError("The token space is too crowded; use a longer token length.")
    return fresh
