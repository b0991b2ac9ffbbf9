from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FrontendJsConfig(AppConfig):
    name = "frontend_js"
    verbose_name = _("Snippet")
