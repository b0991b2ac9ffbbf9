"""Pools and their addresses: generated tokens, uploaded lists, resizing."""

import csv
import io
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import F

from projects.models import Project

from . import tokens
from .models import Address, Lease, Pool, StaticAddress


def pool_address_for_token(pool: Pool, token: str) -> str:
    local, domain = pool.base_email.lower().split("@", 1)
    separator = "+" if pool.kind == Pool.Kind.PLUS else "-"
    return f"{local}{separator}{token}@{domain}"


def pool_fill(pool: Pool) -> int:
    """Issue addresses until the pool holds `size` active ones. Never deletes an
    address or touches a lease: shrinking a pool only deactivates the addresses
    released longest ago, so live leases and history stay intact."""
    if not pool.generated:
        return 0
    with transaction.atomic():
        pool = Pool.objects.select_for_update().get(pk=pool.pk)
        active = pool.addresses.filter(active=True)
        missing = pool.size - active.count()
        if missing < 0:
            # Not `exclude(leases__released_at__isnull=True)`: across the LEFT JOIN that
            # also spares every never-leased address, so a fresh pool never shrank.
            live = Lease.objects.filter(pool=pool, released_at__isnull=True).values("address_id")
            surplus = (
                active.exclude(id__in=live)
                .order_by(F("last_released_at").asc(nulls_first=True), "id")
                .values_list("id", flat=True)[:-missing]
            )
            return -Address.objects.filter(id__in=list(surplus)).update(active=False)
        if missing == 0:
            return 0
        # Reactivate addresses set aside by an earlier shrink before issuing new ones.
        revived = list(pool.addresses.filter(active=False).values_list("id", flat=True)[:missing])
        Address.objects.filter(id__in=revived).update(active=True)
        missing -= len(revived)
        existing = list(pool.addresses.values_list("token", flat=True))
        length = max([tokens.token_length(pool.size)] + [len(t) for t in existing])
        fresh = tokens.new_tokens(missing, existing, length)
        Address.objects.bulk_create([Address(pool=pool, token=t, email=pool_address_for_token(pool, t)) for t in fresh])
        return len(revived) + len(fresh)


MAX_UPLOAD = 100_000


def _candidates(text: str) -> list[str]:
    """Addresses from pasted text or a CSV file: every cell that holds an '@'."""
    found = []
    for row in csv.reader(io.StringIO(text.replace(";", ","))):
        for cell in row:
            for part in cell.split():
                if "@" in part:
                    found.append(part.strip().strip("<>\"'").lower())
    return found


def allowed_domains(pool: Pool) -> set[str]:
    """An uploaded address must land in the real inbox: the pool's inbox domain
    or a domain of one of the project's sites."""
    domains = {pool.base_email.lower().rpartition("@")[2]}
    names = Project.objects.filter(pk=pool.project_id, sites__domains__isnull=False)
    domains |= {d.lower().removeprefix("www.") for d in names.values_list("sites__domains__domain", flat=True)}
    return domains


def validate_uploaded_addresses(pool: Pool, text: str) -> tuple[list[str], list[str]]:
    """The new addresses to add and the problems found (syntax, duplicates in
    the list or across the project, foreign domain). Nothing is saved."""
    candidates = _candidates(text)
    errors: list[str] = []
    if len(candidates) > MAX_UPLOAD:
        return [], [f"At most {MAX_UPLOAD} addresses at once."]
    domains = allowed_domains(pool)
    taken = set(
        Address.objects.filter(pool__project_id=pool.project_id, email__in=candidates)
        .exclude(pool_id=pool.pk)
        .values_list("email", flat=True)
    )
    taken |= set(StaticAddress.objects.filter(email__in=candidates).values_list("email", flat=True))
    own = set(pool.addresses.filter(email__in=candidates).values_list("email", flat=True)) if pool.pk else set()
    seen: set[str] = set()
    fresh = []
    for email in candidates:
        try:
            validate_email(email)
        except ValidationError:
            errors.append(f"{email}: not a valid address")
            continue
        domain = email.rpartition("@")[2]
        if not any(domain == d or domain.endswith("." + d) for d in domains):
            errors.append(f"{email}: domain {domain} is not the inbox's or a site's domain")
        elif email in seen:
            errors.append(f"{email}: listed twice")
        elif email in taken:
            errors.append(f"{email}: already used elsewhere in the project")
        elif email not in own:
            fresh.append(email)
        seen.add(email)
    if not candidates:
        errors.append("No addresses found: paste one per line, or upload a CSV file.")
    return fresh, errors


def pool_add_uploaded(pool: Pool, emails: list[str]) -> int:
    """Add validated real addresses to an uploaded pool."""
    created = Address.objects.bulk_create([Address(pool=pool, email=email) for email in emails], ignore_conflicts=True)
    return len(created)


# --- Recommended size ---------------------------------------------------------
# The recommendation shown with a pool's health: simulated from the site's own
# traffic where an advisor (the simulation app, registered in its AppConfig)
# has a result, else the observed peak with a margin. Substitution never
# imports its advisors: they register here, as lead listeners do.

PEAK = "peak"
SIMULATED = "simulated"


@dataclass(frozen=True)
class SimulatedSize:
    """An advisor's answer for a pool. `status`: "ready" (with `size`, the
    smallest size reaching `target`), "not_reached" (no size tried did),
    "not_enough_traffic" or "pending" (being computed)."""

    status: str
    size: int | None = None
    target: float = 0.0
    accuracy: float | None = None  # share of correctly credited visitors at `size`
    curve: tuple = ()  # ((size, share of correct visitors), ...) by size
    computed_at: datetime | None = None
    hold_minutes: int | None = None


@dataclass(frozen=True)
class SizeAdvice:
    """The recommended size and what it rests on (`basis`: PEAK or SIMULATED)."""

    size: int
    basis: str
    simulated: SimulatedSize | None = None


_advisors: list = []


def register_size_advisor(advisor) -> None:
    """`advisor(pool)` returns a SimulatedSize or None."""
    if advisor not in _advisors:
        _advisors.append(advisor)


def pool_recommendation(pool: Pool, peak_recommended: int) -> SizeAdvice:
    """The simulated size where one is ready (enough traffic to learn from),
    else the peak with a margin (`peak_recommended`, selectors.pool_health)."""
    simulated = None
    for advisor in _advisors:
        simulated = advisor(pool)
        if simulated is not None:
            break
    if simulated is not None and simulated.status == "ready" and simulated.size:
        return SizeAdvice(size=simulated.size, basis=SIMULATED, simulated=simulated)
    return SizeAdvice(size=peak_recommended, basis=PEAK, simulated=simulated)
