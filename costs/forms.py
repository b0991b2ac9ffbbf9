from django import forms
from django.utils.translation import gettext_lazy as _

from .csv_import import MAX_BYTES


class CostUploadForm(forms.Form):
    file = forms.FileField(
        label=_("CSV file"),
        help_text=_(
            "Columns date, source, medium, campaign, cost; or an export of Yandex Direct or Google Ads "
            "(date or day, campaign, cost). Nothing is imported before you confirm the preview."
        ),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_BYTES:
            raise forms.ValidationError(_("The file is larger than %(mb)s MB.") % {"mb": MAX_BYTES // (1024 * 1024)})
        return upload


class CostConfirmForm(forms.Form):
    token = forms.CharField(widget=forms.HiddenInput, max_length=64)
