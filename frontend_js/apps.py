from django.apps import AppConfig


class FrontendJsConfig(AppConfig):
    name = "frontend_js"
    verbose_name = "Snippet"
