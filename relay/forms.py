"""Admin forms: the upstream's password is write-only (never rendered back),
and its host must pass the internal-network guard when it is saved."""

from django import forms
from django.utils.translation import gettext_lazy as _

from integrations import http

from . import upstream
from .models import Credential, Upstream


class UpstreamForm(forms.ModelForm):
    password = forms.CharField(
        label=_("password"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Stored encrypted and never shown again. Leave empty to keep the current one."),
    )
    clear_password = forms.BooleanField(label=_("remove the stored password"), required=False)

    class Meta:
        model = Upstream
        fields = ["project", "host", "port", "security", "username", "password", "clear_password", "active"]

    def clean_host(self):
        host = self.cleaned_data["host"].strip().rstrip(".").lower()
        port = self.data.get("port") or 25
        try:
            upstream.checked_addresses(host, int(port))
        except (http.RequestFailed, ValueError) as exc:
            raise forms.ValidationError(
                _("This server cannot be used as an upstream: %(reason)s."), params={"reason": exc}
            ) from None
        return host

    def clean_port(self):
        port = self.cleaned_data["port"]
        if not 1 <= port <= 65535:
            raise forms.ValidationError(_("A port is a number from 1 to 65535."))
        return port

    def save(self, commit=True):
        if self.cleaned_data.get("clear_password"):
            upstream.upstream_set_password(self.instance, "")
        elif self.cleaned_data.get("password"):
            upstream.upstream_set_password(self.instance, self.cleaned_data["password"])
        return super().save(commit)


class CredentialForm(forms.ModelForm):
    class Meta:
        model = Credential
        fields = ["project", "name", "allowed_senders", "recipients_per_hour"]
