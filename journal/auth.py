"""Signing in to the journal: marketers are members of a project, not staff,
so the journal has a login of its own (managers keep the admin's).

Failed attempts are counted per username and per client address for a
while; past either limit every attempt is refused with the same words, whether
the username exists or not and whether the password was right, so the page
tells a guesser nothing about which accounts exist.
"""

import hashlib

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.urls import reverse_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from lib.http import client_ip

FAILURES_PER_USERNAME = 5
FAILURES_PER_ADDRESS = 20
WINDOW_SECONDS = 15 * 60
TOO_MANY = gettext_noop("Too many failed sign-ins. Wait 15 minutes and try again.")


def _keys(request, username: str) -> list[str]:
    # A digest, so a username typed by mistake (or a password typed into the
    # username field) is never written to the cache as it is.
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()
    return [f"journal-login:name:{name}", f"journal-login:ip:{client_ip(request)}"]


def _limited(request, username: str) -> bool:
    name_key, ip_key = _keys(request, username)
    counts = cache.get_many([name_key, ip_key])
    return counts.get(name_key, 0) >= FAILURES_PER_USERNAME or counts.get(ip_key, 0) >= FAILURES_PER_ADDRESS


def _count_failure(request, username: str) -> None:
    for key in _keys(request, username):
        # add() starts the window; incr() keeps its expiry.
        cache.add(key, 0, WINDOW_SECONDS)
        try:
            cache.incr(key)
        except ValueError:  # expired between the two calls
            cache.set(key, 1, WINDOW_SECONDS)


class JournalLoginForm(AuthenticationForm):
    """Django's sign-in form with the limits above. Its one message for a
    wrong username or password already says nothing about which was wrong."""

    def clean(self):
        username = self.data.get("username", "")
        if not isinstance(username, str):
            username = ""
        if _limited(self.request, username):
            raise forms.ValidationError(_(TOO_MANY), code="too_many")
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            _count_failure(self.request, username)
            raise
        cache.delete(_keys(self.request, username)[0])
        return cleaned


class JournalLoginView(auth_views.LoginView):
    template_name = "journal/login.html"
    authentication_form = JournalLoginForm
    redirect_authenticated_user = True
    next_page = reverse_lazy("journal:list")


class JournalLogoutView(auth_views.LogoutView):
    next_page = reverse_lazy("journal:login")
