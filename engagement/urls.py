from django.urls import path

from . import views

urlpatterns = [
    path("o/<path:token>.gif", views.pixel, name="engagement-pixel"),
    path("c/<path:token>", views.click, name="engagement-click"),
]
