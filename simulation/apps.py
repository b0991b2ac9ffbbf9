from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SimulationConfig(AppConfig):
    name = "simulation"
    verbose_name = _("Attribution simulation")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from substitution.pools import register_size_advisor

        from .advice import simulated_size

        register_size_advisor(simulated_size)
