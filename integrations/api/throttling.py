"""Requests per API key per minute (API_RATE_LIMIT_PER_MINUTE), counted by
the service's one rate limiter (lib.ratelimit: a burst of the limit, then one
request every 60 / limit seconds; no window to turn). Over the limit: 429
with Retry-After, the seconds until the key's next request is allowed."""

from rest_framework.throttling import BaseThrottle

from integrations import conf
from integrations.models import ApiKey
from lib import ratelimit


def api_rule() -> ratelimit.Rule:
    return ratelimit.Rule("api-key", conf.api_rate_limit_per_minute(), 60)


class ApiKeyThrottle(BaseThrottle):
    retry_after = 1

    def allow_request(self, request, view):
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True
        rule = api_rule()
        verdict = ratelimit.hit(rule, str(api_key.pk))
        request.rate_limit = (rule.limit, verdict.remaining)
        self.retry_after = verdict.retry_after
        return verdict.allowed

    def wait(self):
        return self.retry_after
