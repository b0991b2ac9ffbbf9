from django.urls import path

from . import views
from .auth import JournalLoginView, JournalLogoutView

app_name = "journal"
urlpatterns = [
    path("", views.lead_list, name="list"),
    path("leads/<int:lead_id>/", views.lead_detail, name="lead"),
    path("reports/", views.report, name="report"),
    path("export.csv", views.export, name="export"),
    path("costs/", views.cost_upload, name="costs"),
    path("sent/", views.message_list, name="messages"),
    path("sent/<int:message_id>/", views.message_detail, name="message"),
    path("login/", JournalLoginView.as_view(), name="login"),
    path("logout/", JournalLogoutView.as_view(), name="logout"),
    path("language/", views.language, name="language"),
]
