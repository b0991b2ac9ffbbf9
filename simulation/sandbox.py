"""A scratch copy of one pool's setup for a simulation to run in.

A simulation writes what real traffic writes (visitors, sessions, leases,
letters, leads), so it never runs on the real site: it gets a project of its
own with one site, one block, one dynamic rule, the pool (the real pool's
kind, hold, exhaustion policy and per-IP cap, at the size being measured) and
a mailbox. It is deleted when the run ends; one left by a run that died
(a worker killed) is deleted by the next run a day later.
"""

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from attribution.models import Lead
from mailbox_sync.models import Mailbox
from mailbox_sync.services import mailbox_set_password
from projects.models import Project
from substitution.models import Address, Block, Lease, Pool, Rule
from substitution.services import pool_fill
from tracker.models import Session, Site, SiteDomain, Visitor

DOMAIN = "simulation.invalid"
ORIGINAL = f"info@{DOMAIN}"
PROJECT_NAME = "Simulation (scratch, deleted after the run)"
LEFTOVER_AFTER = timedelta(days=1)


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
    """The scratch setup (see the module's docstring)."""
    project = Project.objects.create(name=PROJECT_NAME, time_zone=shape.time_zone, scratch=True)
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
    # A mailbox is connected only once: each sandbox's own login, so runs can overlap.
    login = f"run-{secrets.token_hex(8)}@{DOMAIN}"
    mailbox = Mailbox(project=project, name="Simulation", host=DOMAIN, username=login)
    mailbox_set_password(mailbox, secrets.token_urlsafe(16))
    mailbox.save()
    return Sandbox(project, site, pool, block, mailbox)


def remove_sandbox(sandbox: Sandbox) -> None:
    """Delete the scratch project and everything the run wrote under it."""
    _delete_project(sandbox.project.pk)


def _delete_project(pk: int) -> None:
    """The scratch project and all under it. The rows a run writes by the
    thousand (leases, sessions, visitors, addresses) go in one statement
    each: Django's deletion would load every one of them to cascade and set
    to NULL what refers to them, which is only the project's own leads (set to
    NULL first). The constraints are checked at commit, so a row anyone else
    referred to would stop the deletion rather than be lost."""
    with transaction.atomic():
        Lead.objects.filter(project_id=pk).update(lease=None, session=None, visitor=None, address=None)
        visitors = Visitor.objects.filter(site__project_id=pk)
        for rows in (
            Lease.objects.filter(pool__project_id=pk),
            Session.objects.filter(visitor__in=visitors),
            visitors,
            Address.objects.filter(pool__project_id=pk),
        ):
            rows._raw_delete(rows.db)  # one DELETE, nothing loaded
        Rule.objects.filter(project_id=pk).delete()  # a rule protects its pool
        Project.objects.filter(pk=pk).delete()


def scratch_projects():
    """The scratch projects that exist now (a running simulation's, or one
    left by a run that died). No one's: `projects.selectors.people_projects`
    and every list for people leave them out."""
    return Project.objects.filter(scratch=True)


def remove_leftovers() -> int:
    """Scratch projects of runs that died more than a day ago (a running
    simulation's own is younger)."""
    old = scratch_projects().filter(created_at__lt=timezone.now() - LEFTOVER_AFTER).values_list("pk", flat=True)
    deleted = 0
    for pk in list(old):
        _delete_project(pk)
        deleted += 1
    return deleted
