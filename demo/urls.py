from django.urls import path

from . import views

app_name = "demo"
urlpatterns = [
    path("", views.page, name="page"),
    path("send", views.send, name="send"),
    path("send-tracked", views.send_tracked, name="send_tracked"),
    path("inbox/", views.inbox, name="inbox"),
]
