"""What keeps the report days (`costs.rollups`) in step with the rows they
count: lead events from attribution (leads it writes in bulk; heard inside
its transaction, so the days commit or roll back with the leads), and the save
and delete signals of the models whose rows the report counts. Connected in
`CostsConfig.ready`; the owners of those tables never call us."""

from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save

from attribution import events
from attribution.models import Lead
from mailbox_sync.models import Letter, Mailbox
from projects.models import Project
from substitution.models import Block
from tracker import first_visit
from tracker.models import Session, Site

from . import rollups
from .models import RollupState
from .tasks import rebuild_report_days


def lead_saved(sender, instance: Lead, created: bool, update_fields=None, **kwargs) -> None:
    if update_fields is not None and not (set(update_fields) & rollups.COUNTED_FIELDS):
        return
    # Its day as stored (the instance may hold what the caller passed: a string).
    rollups.recount_leads([instance.pk])


def letter_saved(sender, instance: Letter, **kwargs) -> None:
    """A letter joining a lead may change the mailbox of its first letter."""
    if instance.lead_id is not None:
        rollups.recount_leads([instance.lead_id])


def letter_deleted(sender, instance: Letter, **kwargs) -> None:
    if instance.lead_id is not None:
        lead_id = instance.lead_id
        transaction.on_commit(lambda: rollups.recount_leads([lead_id]))


def lead_deleted(sender, instance: Lead, **kwargs) -> None:
    """After commit: a lead is also deleted with its whole project, whose
    days must then stay gone (their recount finds no project)."""
    project_id, created_at = instance.project_id, instance.created_at

    def recount():
        time_zone = Project.objects.filter(pk=project_id).values_list("time_zone", flat=True).first()
        if time_zone is not None:
            rollups.recount_lead_days(project_id, {rollups.local_day(created_at, time_zone)})

    transaction.on_commit(recount)


def session_saved(sender, instance: Session, created: bool, **kwargs) -> None:
    if created and connection.vendor != "postgresql":
        rollups.add_sessions(instance, 1)


def session_deleted(sender, instance: Session, **kwargs) -> None:
    if connection.vendor != "postgresql":
        rollups.add_sessions(instance, -1)


def project_saved(sender, instance: Project, created: bool, **kwargs) -> None:
    """A new project has nothing to count; a new time zone moves every day's
    boundaries, so its days are counted again (the report reads raw rows meanwhile)."""
    if created:
        RollupState.objects.create(project=instance, time_zone=instance.time_zone)
    elif not rollups.ready(instance):
        rebuild_later(instance.pk)


def group_deleted(sender, instance, **kwargs) -> None:
    """A site, block or mailbox gone: its leads' groups change (their
    reference is set to none), so the project's days are counted again."""
    rebuild_later(instance.project_id)


def rebuild_later(project_id: int) -> None:
    transaction.on_commit(lambda: rebuild_report_days.delay(project_id))


# A new visitor's session, counted in the first-visit statement that inserts
# it (as the session table's trigger would count it: the same delta from the
# same row, the day in the project's time zone as the statement reads it),
# with the flag that tells the trigger (migration 0007) that this statement's
# sessions are counted. RETURNING sets the flag even though nothing reads it.
FIRST_VISIT_SESSION = (
    "costs_session_counted AS (INSERT INTO costs_sessiondelta "
    "(project_id, day, channel, source, medium, campaign, keyword, site_id, n) "
    "SELECT t.project_id, (s.started_at AT TIME ZONE p.time_zone)::date, s.channel, s.source, s.utm_medium, "
    "s.utm_campaign, s.keyword, v.site_id, 1 FROM new_session s JOIN new_visitor v ON v.id = s.visitor_id "
    "JOIN tracker_site t ON t.id = v.site_id JOIN projects_project p ON p.id = t.project_id "
    "RETURNING set_config('costs.sessions_counted', 'on', true))"
)


def connect() -> None:
    first_visit.write_also(FIRST_VISIT_SESSION)
    events.subscribe_in_transaction(events.LEAD_CREATED, rollups.count_new_leads)
    # Changes people make save the lead (lead_saved, in their transaction); a
    # letter joining a lead changes a counted figure only if it became the
    # lead's first letter (its mailbox): counted after commit.
    events.subscribe_many(events.LEAD_UPDATED, rollups.recount_leads)
    post_save.connect(lead_saved, sender=Lead, dispatch_uid="costs.lead_saved")
    post_delete.connect(lead_deleted, sender=Lead, dispatch_uid="costs.lead_deleted")
    post_save.connect(letter_saved, sender=Letter, dispatch_uid="costs.letter_saved")
    post_delete.connect(letter_deleted, sender=Letter, dispatch_uid="costs.letter_deleted")
    post_save.connect(session_saved, sender=Session, dispatch_uid="costs.session_saved")
    post_delete.connect(session_deleted, sender=Session, dispatch_uid="costs.session_deleted")
    post_save.connect(project_saved, sender=Project, dispatch_uid="costs.project_saved")
    for model in (Site, Block, Mailbox):
        post_delete.connect(group_deleted, sender=model, dispatch_uid=f"costs.{model.__name__}_deleted")
