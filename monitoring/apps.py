from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MonitoringConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "monitoring"
    verbose_name = _("Health")

    def ready(self):
        from mailbox_sync import events

        from . import services

        # A mailbox's refused OAuth2 grant is alerted at once, and ends when it is connected again.
        events.subscribe_reconnect_needed(services.mailbox_grant_changed)
        events.subscribe_connected(services.mailbox_grant_changed)
