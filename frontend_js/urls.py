"""Mounted in config/urls.py as path("api/v1/report", include("frontend_js.urls"))."""

from django.urls import path

from .views import report

urlpatterns = [path("", report, name="snippet_report")]
