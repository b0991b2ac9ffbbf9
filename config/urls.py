from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from frontend_js.views import snippet
from tracker.views import collect

urlpatterns = [
    path("s/<str:site_key>.js", snippet, name="snippet"),
    path("api/v1/collect", collect, name="collect"),
    path("journal/", include("journal.urls")),
    path("admin/", admin.site.urls),
]

if settings.DEMO:
    urlpatterns.append(path("demo/", include("demo.urls")))
