import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_wsgi_application()

from tracker.wsgi import CollectRoute  # noqa: E402 - needs Django set up

# POST /api/v1/collect is answered before Django's request handling (tracker.wsgi).
application = CollectRoute(django_application)
