"""One limit for every sign-in (the journal's and the admin's).

Failed attempts are counted per username and per client address by the
service's one rate limiter (lib.ratelimit): 5 per username and 20 per
address in 15 minutes, then one more attempt every 3 minutes (45 seconds per
address). Past either limit every attempt is refused with the same words,
whether the username exists or not and whether the password was right, so a
guesser learns nothing about which accounts exist. Each lockout is recorded
for superusers to see in admin (the username only when it names an account:
a password typed into the username field is never written down).
"""

import hashlib
from datetime import timedelta

from django import forms
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from lib import ratelimit
from lib.http import client_ip

from .models import LoginLockout

FAILURES_PER_USERNAME = 5
FAILURES_PER_ADDRESS = 20
WINDOW_SECONDS = 15 * 60
TOO_MANY = gettext_noop("Too many failed sign-ins. Wait a few minutes and try again.")
BY_NAME = ratelimit.Rule("login-name", FAILURES_PER_USERNAME, WINDOW_SECONDS)
BY_ADDRESS = ratelimit.Rule("login-ip", FAILURES_PER_ADDRESS, WINDOW_SECONDS)


def _name(username: str) -> str:
    # A digest, so a username typed by mistake (or a password typed into the
    # username field) is never written to the cache as it is.
    return hashlib.sha256(username.strip().lower().encode()).hexdigest()


def limited(request, username: str) -> bool:
    return not (
        ratelimit.peek(BY_NAME, _name(username)).allowed and ratelimit.peek(BY_ADDRESS, client_ip(request)).allowed
    )


def count_failure(request, username: str, *, where: str) -> None:
    """One more failed attempt; the attempt that uses up a limit records a
    lockout, until the next attempt is allowed."""
    by_name = ratelimit.hit(BY_NAME, _name(username))
    by_address = ratelimit.hit(BY_ADDRESS, client_ip(request))
    reached = [v for v in (by_name, by_address) if v.allowed and v.remaining == 0]
    if reached:
        known = get_user_model().objects.filter(username__iexact=username.strip()).exists()
        LoginLockout.objects.create(
            where=where,
            username=username.strip()[:150] if known else "",
            client_address=client_ip(request) or None,
            reason=LoginLockout.Reason.USERNAME if reached[0] is by_name else LoginLockout.Reason.ADDRESS,
            until=timezone.now() + timedelta(milliseconds=max(v.retry_after_ms for v in reached)),
        )


def succeeded(request, username: str) -> None:
    ratelimit.reset(BY_NAME, _name(username))


class LimitedLogin:
    """A sign-in form (Django's AuthenticationForm or the admin's) with the
    limits above. Django's one message for a wrong username or password
    already says nothing about which was wrong."""

    login_place = ""

    def clean(self):
        username = self.data.get("username", "")
        if not isinstance(username, str):
            username = ""
        if limited(self.request, username):
            raise forms.ValidationError(_(TOO_MANY), code="too_many")
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            count_failure(self.request, username, where=self.login_place)
            raise
        succeeded(self.request, username)
        return cleaned
