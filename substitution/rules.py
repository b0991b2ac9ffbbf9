"""Rules: which address a visit is shown. First matching active rule wins.

A site's configuration (domains, rules, conditions, blocks) is read once into
an immutable snapshot and kept in process memory for SNAPSHOT_SECONDS, so the
collect endpoint reads no configuration rows per request; a change in admin
reaches every process within that time.
"""

import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Prefetch

from tracker.channels import parse_domains
from tracker.models import Site, Visitor

from .conditions import Visit, condition_holds
from .models import Block, Pool, Rule, RuleCondition

SNAPSHOT_SECONDS = 30


@dataclass(frozen=True)
class RuleView:
    id: int
    kind: str
    pool_id: int | None
    static_email: str
    conditions: tuple  # (field, operator, value, negate)
    block_ids: tuple

    def matches(self, visit: Visit) -> bool:
        return all(condition_holds(f, op, value, negate, visit) for f, op, value, negate in self.conditions)


@dataclass(frozen=True)
class SiteSnapshot:
    site_id: int
    project_id: int
    site_key: str
    original_email: str
    domains: tuple  # (SiteDomain id, domain)
    rules: tuple[RuleView, ...]
    blocks: tuple  # (id, kind, selector) of every block an active rule uses
    excluded_referrers: tuple  # the referral-exclusion list plus the site's own domains
    last_non_direct_days: int
    fingerprint: str


_cache: dict[str, tuple[float, SiteSnapshot | None]] = {}
_lock = threading.Lock()


def load_snapshot(site_key: str) -> SiteSnapshot | None:
    site = Site.objects.filter(site_key=site_key, active=True).prefetch_related("domains").first()
    if site is None:
        return None
    rules = (
        Rule.objects.filter(sites=site, active=True)
        .select_related("static_address")
        .prefetch_related("blocks", Prefetch("conditions", queryset=RuleCondition.objects.order_by("id")))
        .order_by("order", "id")
    )
    views = []
    blocks: dict[int, tuple] = {}
    for rule in rules:
        if rule.kind == Rule.Kind.STATIC and not (rule.static_address and rule.static_address.active):
            continue
        rule_blocks = sorted(rule.blocks.all(), key=lambda b: b.pk)
        for block in rule_blocks:
            blocks[block.pk] = (block.pk, block.kind, block.selector)
        views.append(
            RuleView(
                id=rule.pk,
                kind=rule.kind,
                pool_id=rule.pool_id,
                static_email=rule.static_address.email if rule.static_address else "",
                conditions=tuple((c.field, c.operator, c.value, c.negate) for c in rule.conditions.all()),
                block_ids=tuple(b.pk for b in rule_blocks),
            )
        )
    body = (
        site.pk,
        site.project_id,
        site.site_key,
        site.original_email.lower(),
        domain_names(site),
        tuple(views),
        tuple(blocks[k] for k in sorted(blocks)),
        parse_domains(site.referral_exclusions) + tuple(d.domain.lower() for d in site.domains.all()),
        site.last_non_direct_days,
    )
    fingerprint = hashlib.sha256(repr(body).encode()).hexdigest()[:16]
    return SiteSnapshot(*body, fingerprint=fingerprint)


def cached_snapshot(site_key: str) -> tuple[bool, SiteSnapshot | None]:
    """(True, snapshot or None for an unknown key) when this process has a
    fresh answer; (False, None) when answering would read the database."""
    cached = _cache.get(site_key)
    if cached is not None and time.monotonic() - cached[0] < SNAPSHOT_SECONDS:
        return True, cached[1]
    return False, None


def site_snapshot(site_key: str, *, fresh: bool = False) -> SiteSnapshot | None:
    now = time.monotonic()
    cached = None if fresh else _cache.get(site_key)
    if cached is not None and now - cached[0] < SNAPSHOT_SECONDS:
        return cached[1]
    snapshot = load_snapshot(site_key)
    with _lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[site_key] = (now, snapshot)
    return snapshot


def forget_snapshots() -> None:
    _cache.clear()


def domain_names(site: Site) -> tuple[tuple[int, str], ...]:
    """A site's domains as domain_of matches them: (SiteDomain id, name without www.)."""
    return tuple(sorted((d.pk, d.domain.lower().removeprefix("www.")) for d in site.domains.all()))


def domain_of(domains: tuple[tuple[int, str], ...], host: str) -> int | None:
    """The SiteDomain id (of `domains`, see domain_names) a host belongs to:
    the domain itself or a subdomain."""
    host = host.lower().removeprefix("www.")
    for domain_id, name in domains:
        if host == name or host.endswith("." + name):
            return domain_id
    return None


@dataclass
class Substitution:
    subs: list[dict]
    expires_at: datetime | None
    rule: RuleView | None = None
    lease_id: int | None = None
    hold_minutes: int = 0
    refused: str = ""


def first_rule(snapshot: SiteSnapshot, visit: Visit, *, with_visitor: bool) -> RuleView | None:
    """The first active rule matching the visit; a dynamic rule needs a
    visitor (no consent: it does not apply)."""
    for rule in snapshot.rules:
        if rule.kind == Rule.Kind.DYNAMIC and not with_visitor:
            continue
        if rule.matches(visit):
            return rule
    return None


def substitute(
    *, snapshot: SiteSnapshot, visitor: Visitor | None, visit: Visit, now: datetime, ip_hash: str = ""
) -> Substitution:
    """The first matching rule's answer for each of its blocks. A static rule
    shows its channel's address (no lease, no visitor needed); a dynamic one
    leases from its pool, and without a visitor (no consent) does not apply.
    An empty answer means: keep the original address."""
    from .services import lease_acquire

    rule = first_rule(snapshot, visit, with_visitor=visitor is not None)
    if rule is None or rule.kind == Rule.Kind.STATIC:
        return static_or_nothing(rule)
    pool = Pool.objects.get(pk=rule.pool_id)
    allocation = lease_acquire(pool=pool, visitor=visitor, now=now, ip_hash=ip_hash)
    return leased(rule, allocation, pool.hold_minutes)


def leased(rule: RuleView, allocation, hold_minutes: int) -> Substitution:
    """A dynamic rule's answer: the leased address in each block, or (refused)
    the original address."""
    if not allocation.email:
        return Substitution(subs=[], expires_at=None, rule=rule, refused=allocation.refused)
    return Substitution(
        subs=_subs(rule, allocation.email),
        expires_at=allocation.expires_at,
        rule=rule,
        lease_id=allocation.lease.pk if allocation.lease else None,
        hold_minutes=hold_minutes,
    )


def static_or_nothing(rule: RuleView | None) -> Substitution:
    """The answer of a rule that leases nothing: a static address, or none."""
    if rule is None:
        return Substitution(subs=[], expires_at=None)
    return Substitution(subs=_subs(rule, rule.static_email), expires_at=None, rule=rule)


def _subs(rule: RuleView, email: str) -> list[dict]:
    return [{"block": block_id, "email": email} for block_id in rule.block_ids]


def blocks_for_site(site: Site) -> list[Block]:
    return list(Block.objects.filter(rules__sites=site, rules__active=True).distinct().order_by("id"))
