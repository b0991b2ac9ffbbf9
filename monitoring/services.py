"""Opening and closing health conditions: a condition that begins is stored
and announced once (`alert.started`), one that is over is closed and
announced once (`alert.ended`); one that goes on changes nothing, so a
condition never floods anyone. Evaluations of one project are serialised by
a row lock on the project, so two workers never announce the same change."""

from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from integrations import alerts
from integrations.tasks import enqueue_alert
from mailbox_sync.models import Mailbox
from projects.languages import in_project_language
from projects.models import Project
from projects.selectors import people_projects

from .checks import conditions_now
from .models import Condition


def _alert(condition: Condition, event: str) -> alerts.Alert:
    """The alert's words in the project's language."""
    began = event == alerts.STARTED
    when = f"{(condition.started_at if began else condition.ended_at):%Y-%m-%d %H:%M} UTC"
    with in_project_language(condition.project):
        if began:
            subject = _("Alert: %(summary)s") % {"summary": condition.summary}
            since = _("Since: %(when)s") % {"when": when}
        else:
            subject = _("Resolved: %(summary)s") % {"summary": condition.summary}
            since = _("Ended: %(when)s") % {"when": when}
    lines = [condition.project.name, "", subject, since]
    return alerts.Alert(
        key=f"{condition.pk}:{'started' if began else 'ended'}",
        event=event,
        project_id=condition.project_id,
        subject=subject[:200],
        text="\n".join(lines),
        data={
            "id": condition.pk,
            "kind": condition.kind,
            "subject": condition.subject,
            "summary": condition.summary,
            "details": condition.details,
            "started_at": condition.started_at.isoformat(),
            "ended_at": condition.ended_at.isoformat() if condition.ended_at else None,
        },
    )


def project_health_evaluate(project_id: int, now: datetime | None = None) -> dict[str, list[int]]:
    """Bring the project's open conditions in line with what holds at `now`.
    Returns the ids of the conditions that began and that ended."""
    now = now or timezone.now()
    with in_project_language(project_id):  # summaries are stored as the project's managers read them
        current = conditions_now(project_id, now)
    began, ended = [], []
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=project_id)
        open_rows = {(c.kind, c.subject): c for c in Condition.objects.filter(project=project, ended_at__isnull=True)}
        for key, (summary, details) in current.items():
            if key in open_rows:
                continue
            condition = Condition.objects.create(
                project=project, kind=key[0], subject=key[1], summary=summary[:500], details=details, started_at=now
            )
            began.append(condition)
        for key, condition in open_rows.items():
            if key not in current:
                condition.ended_at = now
                condition.save(update_fields=["ended_at"])
                ended.append(condition)
        for condition in began:
            enqueue_alert(alerts.alert_announce(_alert(condition, alerts.STARTED), now))
        for condition in ended:
            enqueue_alert(alerts.alert_announce(_alert(condition, alerts.ENDED), now))
    return {"started": [c.pk for c in began], "ended": [c.pk for c in ended]}


def mailbox_grant_changed(mailbox_id: int, _reason: str = "") -> None:
    """mailbox_sync's "needs reconnecting" and "connected": the mailbox's
    project is evaluated at once, so its managers hear of a refused grant
    now (not at the next beat), once per spell, and that it is over."""
    project_id = Mailbox.objects.filter(pk=mailbox_id).values_list("project_id", flat=True).first()
    if project_id is not None:
        project_health_evaluate(project_id)


def health_evaluate_all(now: datetime | None = None) -> int:
    """Every project, one at a time (a simulation's scratch project is no
    one's: never evaluated); returns how many conditions changed."""
    changed = 0
    for project_id in people_projects().values_list("pk", flat=True):
        result = project_health_evaluate(project_id, now)
        changed += len(result["started"]) + len(result["ended"])
    return changed
