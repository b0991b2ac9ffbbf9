import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_wsgi_application()

from engagement.wsgi import TrackingRoute  # noqa: E402 - needs Django set up
from tracker.wsgi import CollectRoute  # noqa: E402

# POST /api/v1/collect (tracker.wsgi), and the pixel and clicks of tracked
# letters (engagement.wsgi), are answered before Django's request handling.
application = TrackingRoute(CollectRoute(django_application))
