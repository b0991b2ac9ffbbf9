"""Requests per API key per minute (API_RATE_LIMIT_PER_MINUTE): a fixed
one-minute window counted in the cache (atomic INCR on Redis). Over the limit:
429 with Retry-After, the seconds until the window ends."""

import logging
import math
import time

from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from integrations import conf
from integrations.models import ApiKey

log = logging.getLogger(__name__)
WINDOW = 60


class ApiKeyThrottle(BaseThrottle):
    def allow_request(self, request, view):
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True
        limit = conf.api_rate_limit_per_minute()
        now = time.time()
        window = int(now // WINDOW)
        self.remaining_seconds = WINDOW - (now % WINDOW)
        cache_key = f"api-rate:{api_key.pk}:{window}"
        try:
            cache.add(cache_key, 0, WINDOW + 10)
            count = cache.incr(cache_key)
        except ValueError:  # expired between add and incr
            cache.set(cache_key, 1, WINDOW + 10)
            count = 1
        except Exception:  # noqa: BLE001 - a cache outage must not take the API down
            log.warning("API rate limit not counted: the cache is unavailable", exc_info=True)
            return True
        request.rate_limit = (limit, max(limit - count, 0))
        return count <= limit

    def wait(self):
        return max(1, math.ceil(self.remaining_seconds))
