"""One limit for every sign-in (the journal's and the admin's).

Failed attempts are counted per username and per client address for a
while; past either limit every attempt is refused with the same words,
whether the username exists or not and whether the password was right, so a
guesser learns nothing about which accounts exist. Each lockout is recorded
for superusers to see in admin (the username only when it names an account:
a password typed into the username field is never written down).
"""

import hashlib
from datetime import timedelta

from django import forms
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from lib.http import client_ip

from .models import LoginLockout

FAILURES_PER_USERNAME = 5
FAILURES_PER_ADDRESS = 20
WINDOW_SECONDS = 15 * 60
TOO_MANY = gettext_noop("Too many failed sign-ins. Wait 15 minutes and try again.")


def _keys(request, username: str) -> list[str]:
    # A digest, so a username typed by mistake (or a password typed into the
    # username field) is never written to the cache as it is.
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()
    return [f"login:name:{name}", f"login:ip:{client_ip(request)}"]


def limited(request, username: str) -> bool:
    name_key, ip_key = _keys(request, username)
    counts = cache.get_many([name_key, ip_key])
    return counts.get(name_key, 0) >= FAILURES_PER_USERNAME or counts.get(ip_key, 0) >= FAILURES_PER_ADDRESS


def count_failure(request, username: str, *, where: str) -> None:
    """One more failed attempt; the attempt that reaches a limit records a lockout."""
    counts = []
    for key in _keys(request, username):
        # add() starts the window; incr() keeps its expiry.
        cache.add(key, 0, WINDOW_SECONDS)
        try:
            counts.append(cache.incr(key))
        except ValueError:  # expired between the two calls
            cache.set(key, 1, WINDOW_SECONDS)
            counts.append(1)
    by_name, by_address = counts
    if by_name == FAILURES_PER_USERNAME or by_address == FAILURES_PER_ADDRESS:
        known = get_user_model().objects.filter(username__iexact=username.strip()).exists()
        LoginLockout.objects.create(
            where=where,
            username=username.strip()[:150] if known else "",
            client_address=client_ip(request) or None,
            reason=LoginLockout.Reason.USERNAME if by_name == FAILURES_PER_USERNAME else LoginLockout.Reason.ADDRESS,
            until=timezone.now() + timedelta(seconds=WINDOW_SECONDS),
        )


def succeeded(request, username: str) -> None:
    cache.delete(_keys(request, username)[0])


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
