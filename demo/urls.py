from django.urls import path

from . import views

app_name = "demo"
urlpatterns = [
    path("", views.page, name="page"),
    path("send", views.send, name="send"),
]
