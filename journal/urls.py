from django.urls import path

from . import views

app_name = "journal"
urlpatterns = [path("", views.lead_list, name="list")]
