"""Rules: which address each block of a page shows. For each block, the first
active rule (by order) that covers the block and matches the visit decides:
a dynamic rule leases from its pool, a static one shows its channel's
address; a block no rule decides keeps its original address.

A site's rules (with their conditions and blocks, and what leasing reads of
their pools) are read once into an immutable snapshot and kept in process
memory for SNAPSHOT_SECONDS, so the collect endpoint reads no configuration
rows per request; a change in admin reaches every process within that time.
"""

import hashlib
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Prefetch

from projects.models import Project

from .conditions import Visit, condition_holds
from .models import Block, Pool, Rule, RuleCondition

SNAPSHOT_SECONDS = 30
POOL_FIELDS = ("id", "hold_minutes", "exhausted_policy", "max_live_leases_per_ip")


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
class RulesSnapshot:
    site_id: int
    time_zone: str
    rules: tuple[RuleView, ...]
    blocks: tuple  # (id, kind, selector) of every block an active rule covers
    fingerprint: str
    # Worked out once from the rules: whether a condition reads the visit's
    # local time (a schedule), and, when no rule has a condition, the
    # decision itself (without and with a visitor), the same for every visit.
    reads_time: bool = True
    fixed: tuple | None = None
    # What leasing reads of each dynamic rule's pool: (pool id, hold minutes,
    # exhaustion policy, per-IP cap), by pool id.
    pools: tuple = ()

    def pool(self, pool_id: int) -> Pool:
        """The pool as leasing reads it (its other fields are read from the
        database if ever touched)."""
        for row in self.pools:
            if row[0] == pool_id:
                return Pool.from_db(DEFAULT_DB_ALIAS, POOL_FIELDS, row)
        return Pool.objects.get(pk=pool_id)


_cache: dict[int, tuple[float, RulesSnapshot]] = {}
_lock = threading.Lock()


def load_snapshot(site_id: int) -> RulesSnapshot:
    rules = (
        Rule.objects.filter(sites__id=site_id, active=True)
        .select_related("static_address", "pool")
        .prefetch_related("blocks", Prefetch("conditions", queryset=RuleCondition.objects.order_by("id")))
        .order_by("order", "id")
    )
    views = []
    blocks: dict[int, tuple] = {}
    pools: dict[int, tuple] = {}
    for rule in rules:
        if rule.kind == Rule.Kind.STATIC and not (rule.static_address and rule.static_address.active):
            continue
        if rule.pool is not None:
            pools[rule.pool_id] = tuple(getattr(rule.pool, name) for name in POOL_FIELDS)
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
    time_zone = Project.objects.filter(sites__id=site_id).values_list("time_zone", flat=True).first() or "UTC"
    body = (site_id, time_zone, tuple(views), tuple(blocks[k] for k in sorted(blocks)))
    fingerprint = hashlib.sha256(repr(body).encode()).hexdigest()[:16]
    snapshot = RulesSnapshot(
        *body,
        fingerprint=fingerprint,
        pools=tuple(pools[k] for k in sorted(pools)),
        reads_time=any(condition[0] == "schedule" for view in views for condition in view.conditions),
    )
    if any(view.conditions for view in views):
        return snapshot
    fixed = tuple(_decide(snapshot, Visit(), with_visitor=with_visitor) for with_visitor in (False, True))
    return replace(snapshot, fixed=fixed)


def rules_snapshot(site_id: int, *, fresh: bool = False) -> RulesSnapshot:
    now = time.monotonic()
    cached = None if fresh else _cache.get(site_id)
    if cached is not None and now - cached[0] < SNAPSHOT_SECONDS:
        return cached[1]
    snapshot = load_snapshot(site_id)
    with _lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[site_id] = (now, snapshot)
    return snapshot


def forget_snapshots() -> None:
    _cache.clear()


@dataclass(frozen=True)
class Decision:
    """What the rules decided for a visit: the static addresses by block, and
    the pools to lease from with the blocks each one's address goes to."""

    static: tuple  # ({"block", "email"}, ...)
    pools: tuple  # ((pool id, (block id, ...)), ...) in the order of their first block

    @property
    def rule_count(self) -> int:
        return len(self.static) + len(self.pools)


def decide(snapshot: RulesSnapshot, visit: Visit, *, with_visitor: bool, now: datetime) -> Decision:
    """For each block, the first active rule covering it that matches the
    visit; a dynamic rule needs a visitor (no consent: it does not apply)."""
    if snapshot.fixed is not None:
        return snapshot.fixed[with_visitor]
    if snapshot.reads_time and visit.local_time is None:
        visit = _at(visit, now, snapshot.time_zone)
    return _decide(snapshot, visit, with_visitor=with_visitor)


def _decide(snapshot: RulesSnapshot, visit: Visit, *, with_visitor: bool) -> Decision:
    verdicts: dict[int, bool] = {}
    static, pools = [], {}
    for block_id, _kind, _selector in snapshot.blocks:
        for rule in snapshot.rules:
            if block_id not in rule.block_ids or (rule.kind == Rule.Kind.DYNAMIC and not with_visitor):
                continue
            if rule.id not in verdicts:
                verdicts[rule.id] = rule.matches(visit)
            if not verdicts[rule.id]:
                continue
            if rule.kind == Rule.Kind.STATIC:
                static.append({"block": block_id, "email": rule.static_email})
            else:
                pools.setdefault(rule.pool_id, []).append(block_id)
            break
    return Decision(static=tuple(static), pools=tuple((pool, tuple(blocks)) for pool, blocks in pools.items()))


def _at(visit: Visit, now: datetime, time_zone: str) -> Visit:
    return replace(visit, local_time=now.astimezone(ZoneInfo(time_zone)))


def blocks_for_site(site) -> list[Block]:
    """The blocks an active rule of the site covers: what the snippet looks for."""
    return list(Block.objects.filter(rules__sites=site, rules__active=True).distinct().order_by("id"))
