"""Signing in to the journal: marketers are members of a project, not staff,
so the journal has a login of its own (managers keep the admin's). Both are
limited alike (projects.logins)."""

from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.urls import reverse_lazy

from projects.logins import LimitedLogin


class JournalLoginForm(LimitedLogin, AuthenticationForm):
    """Django's sign-in form with the one limit of every sign-in."""

    login_place = "journal"


class JournalLoginView(auth_views.LoginView):
    template_name = "journal/login.html"
    authentication_form = JournalLoginForm
    redirect_authenticated_user = True
    next_page = reverse_lazy("journal:list")


class JournalLogoutView(auth_views.LogoutView):
    next_page = reverse_lazy("journal:login")
