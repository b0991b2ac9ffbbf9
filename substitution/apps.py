from django.apps import AppConfig


class SubstitutionConfig(AppConfig):
    name = "substitution"
