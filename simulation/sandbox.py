"""A scratch copy of one pool's setup for a simulation to run in.

A simulation writes what real traffic writes (visitors, sessions, leases,
letters, leads), so it never runs on the real site: it gets a project of its
own with one site, one block, one dynamic rule, the pool (the real pool's
kind, hold, exhaustion policy and per-IP cap, at the size being measured) and
a mailbox. It is made inside the caller's transaction, which the simulation
rolls back at the end: nothing of it is ever committed.
"""

import secrets
from dataclasses import dataclass

from mailbox_sync.models import Mailbox
from mailbox_sync.services import mailbox_set_password
from projects.models import Project
from substitution.models import Block, Pool, Rule
from substitution.services import pool_fill
from tracker.models import Site, SiteDomain

DOMAIN = "simulation.invalid"
ORIGINAL = f"info@{DOMAIN}"


@dataclass(frozen=True)
class PoolShape:
    """What of a pool the simulation copies; `size` is the size measured."""

    size: int
    hold_minutes: int = 30
    exhausted_policy: str = Pool.ExhaustedPolicy.ORIGINAL
    max_live_leases_per_ip: int = 5
    time_zone: str = "UTC"

    @classmethod
    def of(cls, pool: Pool, **changes) -> "PoolShape":
        shape = cls(
            size=pool.size,
            hold_minutes=pool.hold_minutes,
            exhausted_policy=pool.exhausted_policy,
            max_live_leases_per_ip=pool.max_live_leases_per_ip,
            time_zone=pool.project.time_zone,
        )
        return cls(**{**shape.__dict__, **changes})


@dataclass
class Sandbox:
    project: Project
    site: Site
    pool: Pool
    block: Block
    mailbox: Mailbox

    @property
    def origin(self) -> str:
        return f"https://{DOMAIN}"


def make_sandbox(shape: PoolShape) -> Sandbox:
    """The scratch setup; call inside a transaction that is rolled back."""
    project = Project.objects.create(name="Simulation", time_zone=shape.time_zone)
    site = Site.objects.create(project=project, name="Simulation", original_email=ORIGINAL)
    SiteDomain.objects.create(site=site, domain=DOMAIN)
    pool = Pool.objects.create(
        project=project,
        name="Simulation",
        kind=Pool.Kind.PLUS,
        base_email=ORIGINAL,
        size=shape.size,
        hold_minutes=shape.hold_minutes,
        exhausted_policy=shape.exhausted_policy,
        max_live_leases_per_ip=shape.max_live_leases_per_ip,
    )
    pool_fill(pool)
    block = Block.objects.create(project=project, name="Email")
    rule = Rule.objects.create(project=project, name="Simulation", kind=Rule.Kind.DYNAMIC, pool=pool)
    rule.sites.add(site)
    rule.blocks.add(block)
    mailbox = Mailbox(project=project, name="Simulation", host=DOMAIN, username=ORIGINAL)
    mailbox_set_password(mailbox, secrets.token_urlsafe(16))
    mailbox.save()
    return Sandbox(project, site, pool, block, mailbox)
