from django.contrib import admin
from django.urls import include, path

from config.views import ping
from frontend_js.views import snippet
from tracker.views import collect

urlpatterns = [
    path("s/<str:site_key>.js", snippet, name="snippet"),
    path("api/v1/collect", collect, name="collect"),
    path("api/v1/report", include("frontend_js.urls")),
    path("api/v1/ping", ping, name="ping"),
    # Pixel and click of tracked letters (answered first by engagement.wsgi in production).
    path("t/", include("engagement.urls")),
    path("api/", include("integrations.api.urls")),
    path("journal/", include("journal.urls")),
    path("admin/", admin.site.urls),
    # Answers 404 unless DEBUG=1 and DEMO=1.
    path("demo/", include("demo.urls")),
]
