from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CostsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "costs"
    verbose_name = _("Advertising costs")

    def ready(self):
        from . import listeners  # models are ready only now

        listeners.connect()
