from django.urls import re_path

from . import views

# Any token, the empty one too: the pixel is always the GIF, a click always the 400 page or the link.
urlpatterns = [
    re_path(r"^o/(?P<token>.*)\.gif$", views.pixel, name="engagement-pixel"),
    re_path(r"^c/(?P<token>.*)$", views.click, name="engagement-click"),
]
