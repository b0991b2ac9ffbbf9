from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EngagementConfig(AppConfig):
    name = "engagement"
    verbose_name = _("Engagement (opens, clicks and replies of sent letters)")

    def ready(self):
        from attribution import events

        from . import listeners

        events.subscribe_many(events.LEAD_CREATED, listeners.leads_changed)
        events.subscribe_many(events.LEAD_UPDATED, listeners.leads_changed)
