from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TrackerConfig(AppConfig):
    name = "tracker"
    verbose_name = _("Sites and visits")

    def ready(self):
        # Sessions' and visitors' activity written behind beside the leases'
        # comes back to their owner when substitution flushes it.
        from substitution.visits import on_flush

        from .sessions import apply_written_behind

        on_flush(apply_written_behind)
