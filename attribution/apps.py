from django.apps import AppConfig


class AttributionConfig(AppConfig):
    name = "attribution"

    def ready(self):
        from mailbox_sync import events

        from . import services

        # mailbox_sync announces stored letters; attribution turns them into leads.
        events.subscribe_letters_stored(services.attribute_stored)
