"""Admin forms: secrets are write-only fields (never rendered back)."""

from django import forms

from . import conf, http
from .models import ApiKey, SiteAnalytics, Webhook, WebhookEvent


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["project", "name", "read_only"]


class WebhookForm(forms.ModelForm):
    url = forms.URLField(
        label="URL",
        max_length=2000,
        assume_scheme="https",
        help_text="http(s) address on the internet that receives the POST.",
    )
    events = forms.MultipleChoiceField(
        choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple, initial=[WebhookEvent.LEAD_CREATED]
    )
    secret = forms.CharField(
        required=False,
        strip=True,
        min_length=16,
        max_length=200,
        widget=forms.PasswordInput(render_value=False),
        help_text="Signs every delivery. Leave empty: a new webhook gets a generated secret, shown once after "
        "saving; a saved one keeps its secret. Stored encrypted and never shown again.",
    )

    class Meta:
        model = Webhook
        fields = ["project", "url", "events", "secret", "description", "active"]

    def clean_url(self):
        url = self.cleaned_data["url"]
        try:
            http.check_url(url, allow_private=conf.allow_private_targets())
        except http.RequestFailed as exc:
            raise forms.ValidationError(f"This address cannot receive webhooks: {exc}.") from None
        return url


class SiteAnalyticsForm(forms.ModelForm):
    ga4_api_secret = forms.CharField(
        label="GA4 API secret",
        required=False,
        strip=True,
        max_length=200,
        widget=forms.PasswordInput(render_value=False),
        help_text="GA4 → Admin → Data streams → the stream → Measurement Protocol API secrets. "
        "Stored encrypted and never shown again; leave empty to keep the current one.",
    )
    metrica_token = forms.CharField(
        label="Metrica OAuth token",
        required=False,
        strip=True,
        max_length=500,
        widget=forms.PasswordInput(render_value=False),
        help_text="An OAuth token with the right to edit the counter (metrika:write). "
        "Stored encrypted and never shown again; leave empty to keep the current one.",
    )
    clear_secrets = forms.BooleanField(required=False, label="Forget the stored secret and token")

    class Meta:
        model = SiteAnalytics
        fields = [
            "site",
            "ga4_enabled",
            "ga4_measurement_id",
            "ga4_api_secret",
            "ga4_event_name",
            "metrica_enabled",
            "metrica_counter_id",
            "metrica_goal",
            "metrica_token",
            "clear_secrets",
        ]

    def clean(self):
        data = super().clean()
        clear = data.get("clear_secrets")
        has_ga4_secret = bool(data.get("ga4_api_secret")) or (
            bool(self.instance.ga4_api_secret_encrypted) and not clear
        )
        has_token = bool(data.get("metrica_token")) or (bool(self.instance.metrica_token_encrypted) and not clear)
        if data.get("ga4_enabled"):
            if not data.get("ga4_measurement_id"):
                self.add_error("ga4_measurement_id", "GA4 needs the stream's measurement id.")
            if not has_ga4_secret:
                self.add_error("ga4_api_secret", "GA4 needs a Measurement Protocol API secret.")
        if data.get("metrica_enabled"):
            if not data.get("metrica_counter_id"):
                self.add_error("metrica_counter_id", "Metrica needs the counter's number.")
            if not has_token:
                self.add_error("metrica_token", "Metrica needs an OAuth token.")
        return data
