from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = _("Integrations (API, webhooks, notifications, analytics)")

    def ready(self):
        from attribution import events
        from engagement import announce

        from . import listeners
        from .api import auth  # noqa: F401 - registers the OpenAPI description of the key scheme

        events.subscribe_many(events.LEAD_CREATED, listeners.leads_created)
        events.subscribe_many(events.LEAD_UPDATED, listeners.leads_updated)
        announce.subscribe(listeners.engagement_events)
