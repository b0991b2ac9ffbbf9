"""From a lead event to the messages it causes: webhook deliveries, and for a
new lead also notifications and analytics conversions."""

from attribution import events
from attribution.models import Lead
from lib.lookups import AnyOf

from . import analytics, notifications, webhooks
from .models import NotificationSetting, SiteAnalytics


def leads_with_work(event: str, lead_ids: list[int]) -> list[int]:
    """The leads (in the order given) whose project, or for a new lead its
    site's analytics, listens to the event; asked once per project and site,
    however many leads."""
    found = Lead.objects.filter(AnyOf("id", lead_ids)).order_by().values_list("pk", "project_id", "site_id")
    where = {lead_id: (project_id, site_id) for lead_id, project_id, site_id in found}
    projects, sites = {}, {}

    def listens(project_id, site_id) -> bool:
        if project_id not in projects:
            projects[project_id] = _project_listens(event, project_id)
        if projects[project_id] or event != events.LEAD_CREATED or not site_id:
            return projects[project_id]
        if site_id not in sites:
            sites[site_id] = SiteAnalytics.objects.filter(site_id=site_id).exists()
        return sites[site_id]

    return [lead_id for lead_id in lead_ids if lead_id in where and listens(*where[lead_id])]


def _project_listens(event: str, project_id: int) -> bool:
    if webhooks.subscribed(project_id, event):
        return True
    if event != events.LEAD_CREATED:
        return False
    members = NotificationSetting.objects.filter(membership__project_id=project_id)
    return members.filter(email_enabled=True).exists() or members.filter(telegram_enabled=True).exists()


def lead_event(event: str, lead_id: int) -> dict[str, list[int]]:
    """Make the rows to send (idempotent for notifications and conversions);
    returns their ids by kind."""
    made = {"deliveries": webhooks.deliveries_for_lead_event(event, lead_id), "notifications": [], "conversions": []}
    if event == events.LEAD_CREATED:
        made["notifications"] = notifications.notifications_for_new_lead(lead_id)
        made["conversions"] = analytics.conversions_for_new_lead(lead_id)
    return made
