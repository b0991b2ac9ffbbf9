"""From a lead event to the messages it causes: webhook deliveries, and for a
new lead also notifications and analytics conversions."""

from attribution import events
from attribution.models import Lead

from . import analytics, notifications, webhooks
from .models import NotificationSetting, SiteAnalytics


def lead_event_has_work(event: str, lead_id: int) -> bool:
    """Whether anything in the lead's project listens (so that projects
    without integrations put nothing on the queue)."""
    lead = Lead.objects.filter(pk=lead_id).values("project_id", "site_id").first()
    if lead is None:
        return False
    if webhooks.subscribed(lead["project_id"], event):
        return True
    if event != events.LEAD_CREATED:
        return False
    members = NotificationSetting.objects.filter(membership__project_id=lead["project_id"])
    if members.filter(email_enabled=True).exists() or members.filter(telegram_enabled=True).exists():
        return True
    return bool(lead["site_id"]) and SiteAnalytics.objects.filter(site_id=lead["site_id"]).exists()


def lead_event(event: str, lead_id: int) -> dict[str, list[int]]:
    """Make the rows to send (idempotent for notifications and conversions);
    returns their ids by kind."""
    made = {"deliveries": webhooks.deliveries_for_lead_event(event, lead_id), "notifications": [], "conversions": []}
    if event == events.LEAD_CREATED:
        made["notifications"] = notifications.notifications_for_new_lead(lead_id)
        made["conversions"] = analytics.conversions_for_new_lead(lead_id)
    return made
