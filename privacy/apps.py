from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PrivacyConfig(AppConfig):
    name = "privacy"
    verbose_name = _("A person's data")

    def ready(self):
        from attribution import privacy as lead_privacy

        from . import services

        # The lead admin's actions reach the composed export and erasure through attribution.
        lead_privacy.provide(services)
