from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AttributionConfig(AppConfig):
    name = "attribution"
    verbose_name = _("Leads")

    def ready(self):
        from mailbox_sync import events

        from . import services

        # mailbox_sync announces stored letters; attribution turns them into leads.
        events.subscribe_letters_stored(services.attribute_stored)
