"""Any recipient address → the tracked address it was meant to be.

A customer may mistype a token: one edit (a wrong, missing or extra
character, or two neighbours swapped) from exactly one issued token is
"corrected" (tokens are issued at least 3 edits apart, so one edit can only
come from one token); a pool-shaped address farther from every token is
"ambiguous": the pool is known, the address is not."""

from dataclasses import dataclass

from django.db.models import Q

from . import tokens
from .models import Address, Pool, StaticAddress


class Match:
    EXACT = "exact"
    CORRECTED = "corrected"
    AMBIGUOUS = "ambiguous"
    STATIC = "static"


@dataclass
class Decoded:
    email: str
    kind: str
    address: Address | None = None
    pool: Pool | None = None
    static_address: StaticAddress | None = None


def one_edit_variants(token: str) -> set[str]:
    """Every string one edit away from `token` over the token alphabet, plus the
    characters customers confuse with it (0/o, 1/l/i)."""
    alphabet = tokens.ALPHABET + "01oli"
    out = set()
    for i in range(len(token) + 1):
        for ch in alphabet:
            out.add(token[:i] + ch + token[i:])  # insertion
        if i < len(token):
            out.add(token[:i] + token[i + 1 :])  # deletion
            for ch in alphabet:
                out.add(token[:i] + ch + token[i + 1 :])  # substitution
        if i < len(token) - 1:
            out.add(token[:i] + token[i + 1] + token[i] + token[i + 2 :])  # transposition
    out.discard(token)
    return out


def token_of(pool: Pool, email: str) -> str | None:
    """The token part of `email` if it has this generated pool's shape."""
    local, _, domain = email.partition("@")
    base_local, _, base_domain = pool.base_email.lower().partition("@")
    separator = "+" if pool.kind == Pool.Kind.PLUS else "-"
    prefix = base_local + separator
    if domain != base_domain or not local.startswith(prefix) or len(local) == len(prefix):
        return None
    return local[len(prefix) :]


def decode_address(project_id: int, email: str) -> Decoded | None:
    """The tracked address behind `email` in this project, or None."""
    email = email.strip().lower()
    address = Address.objects.filter(pool__project_id=project_id, email=email).select_related("pool").first()
    if address is not None:
        return Decoded(email, Match.EXACT, address=address, pool=address.pool)
    static = StaticAddress.objects.filter(project_id=project_id, email=email).first()
    if static is not None:
        return Decoded(email, Match.STATIC, static_address=static)
    generated = Pool.objects.filter(project_id=project_id).filter(Q(kind=Pool.Kind.PLUS) | Q(kind=Pool.Kind.DASH))
    for pool in generated:
        token = token_of(pool, email)
        if token is None:
            continue
        near = list(pool.addresses.filter(token__in=one_edit_variants(token)).select_related("pool")[:2])
        if len(near) == 1:
            return Decoded(email, Match.CORRECTED, address=near[0], pool=pool)
        return Decoded(email, Match.AMBIGUOUS, pool=pool)
    return None


def is_tracked_email(project_id: int, email: str) -> bool:
    return decode_address(project_id, email) is not None
