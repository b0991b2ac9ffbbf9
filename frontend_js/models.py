from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from substitution.models import Block
from tracker.models import Site


class SnippetSettings(models.Model):
    """How the snippet behaves on one site. Rendered into the served script, so
    a change reaches pages within the script's cache lifetime (5 minutes)."""

    site = models.OneToOneField(
        Site, on_delete=models.CASCADE, primary_key=True, related_name="snippet_settings", verbose_name=_("site")
    )
    consent_mode = models.BooleanField(
        _("consent mode"),
        default=False,
        help_text=_(
            "Until the page calls emailtrack('consent', true): nothing is stored in the browser, no visitor "
            "or session is kept and only static addresses are shown. The visitor's consent is then remembered "
            "in their browser until the page calls emailtrack('consent', false). Without consent mode the "
            "page's emailtrack('consent', ...) calls change nothing."
        ),
    )
    honour_gpc = models.BooleanField(
        _("honour Global Privacy Control"),
        default=False,
        help_text=_("A browser sending the Global Privacy Control signal is treated as one that gave no consent."),
    )
    anti_flicker = models.BooleanField(
        _("anti flicker"),
        default=False,
        help_text=_(
            "On a visitor's first view, hide the text holding the original address until their own address "
            "arrives, at most for the timeout. Works with the tag without async at the top of <head>."
        ),
    )
    anti_flicker_timeout_ms = models.PositiveIntegerField(
        _("anti-flicker timeout, ms"),
        default=500,
        validators=[MinValueValidator(50), MaxValueValidator(3000)],
    )
    install_check = models.BooleanField(
        _("install check"),
        default=False,
        help_text=_(
            "The snippet reports the pages where a block's original address was not found (once a page "
            "view, when the visitor leaves it). Turn it on while installing or changing blocks: it adds "
            "to the script every page loads."
        ),
    )
    shadow_dom = models.BooleanField(
        _("inside web components (shadow DOM)"),
        default=False,
        help_text=_(
            "Also replace the address inside open shadow roots: web components and chat widgets that "
            "draw their content there, including ones made after the page loaded. Adds to the script "
            "every page loads, so only for sites that need it."
        ),
    )

    class Meta:
        verbose_name = verbose_name_plural = _("snippet settings")

    def __str__(self):
        return f"Snippet settings of {self.site}"


class MissingBlockReport(models.Model):
    """Install check: a page of the site where the snippet found no trace of a
    block's original address (nor an address it showed instead)."""

    site = models.ForeignKey(
        Site, on_delete=models.CASCADE, related_name="missing_block_reports", verbose_name=_("site")
    )
    block = models.ForeignKey(
        Block, on_delete=models.CASCADE, related_name="missing_block_reports", verbose_name=_("block")
    )
    page_url = models.URLField(_("page"), max_length=1000, help_text=_("Without its query string and fragment"))
    first_seen_at = models.DateTimeField(_("first seen at"))
    last_seen_at = models.DateTimeField(_("last seen at"))
    reports = models.PositiveIntegerField(
        _("reports"), default=1, help_text=_("Counted at most once per page every 10 minutes")
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "block", "page_url"], name="missingblock_unique_page"),
        ]
        indexes = [models.Index(fields=["site", "-last_seen_at"], name="missingblock_site_recent")]
        ordering = ["-last_seen_at"]
        verbose_name = _("install check: page without a block's address")
        verbose_name_plural = _("install check: pages without a block's address")

    def __str__(self):
        return f"{self.block} not found on {self.page_url}"
