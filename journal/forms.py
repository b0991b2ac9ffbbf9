"""The lead page's edit form. It only reads what was typed; the rules for
status, tags, comment and deal amount live in `attribution.leads.lead_update`,
which the API uses too."""

import re

from django import forms
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from attribution.leads import MAX_TAGS, LeadChangeError, lead_update
from attribution.models import Lead

SPACES_RE = re.compile(r"[\s\u00a0\u202f]")


def parse_amount(text: str) -> str:
    """People type "1 500,50" as often as "1500.50": spaces go, a lone decimal
    comma becomes a point. Whether it is a valid amount is lead_update's call."""
    text = SPACES_RE.sub("", text)
    if "," in text and "." not in text and text.count(",") == 1:
        text = text.replace(",", ".")
    return text


class LeadEditForm(forms.Form):
    status = forms.ChoiceField(label=_("Status"), choices=Lead.Status.choices)
    tags = forms.CharField(
        label=_("Tags"), required=False, max_length=2000, help_text=_("Comma-separated, e.g. wholesale, repeat order")
    )
    comment = forms.CharField(
        label=_("Comment"), required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 4})
    )
    deal_amount = forms.CharField(
        label=_("Deal amount"), required=False, max_length=40, widget=forms.TextInput(attrs={"inputmode": "decimal"})
    )
    # When the person opened the page: a save over someone else's newer change
    # is stopped and shown, not silently overwritten.
    seen = forms.CharField(required=False, widget=forms.HiddenInput)

    @classmethod
    def for_lead(cls, lead: Lead, tag_names: list[str]) -> "LeadEditForm":
        return cls(
            initial={
                "status": lead.status,
                "tags": ", ".join(tag_names),
                "comment": lead.comment,
                "deal_amount": "" if lead.deal_amount is None else str(lead.deal_amount),
                "seen": lead.updated_at.isoformat(),
            }
        )

    def clean_tags(self) -> list[str]:
        names = [" ".join(part.split()) for part in self.cleaned_data["tags"].split(",")]
        names = [name for name in names if name]
        if len(names) > MAX_TAGS:
            raise forms.ValidationError(
                ngettext("At most %(count)d tag on a lead.", "At most %(count)d tags on a lead.", MAX_TAGS)
                % {"count": MAX_TAGS}
            )
        return names

    def clean_deal_amount(self) -> str:
        return parse_amount(self.cleaned_data["deal_amount"])

    def changed_since_seen(self, lead: Lead) -> bool:
        return self.cleaned_data.get("seen", "") != lead.updated_at.isoformat()

    def save(self, lead: Lead) -> Lead:
        """Apply through lead_update; its refusals become form errors."""
        data = self.cleaned_data
        try:
            return lead_update(
                lead=lead,
                status=data["status"],
                tags=data["tags"],
                comment=data["comment"],
                deal_amount=data["deal_amount"],
            )
        except LeadChangeError as error:
            self.add_error(None, str(error))
            return lead
