"""Advertising costs: what a project paid per day for a source / medium /
campaign, in the project's currency. One row per day and key, so importing
the same costs again replaces them instead of adding them up."""

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from projects.models import Project

CURRENCY_RE = r"^[A-Z]{3}$"


class CostCurrency(models.Model):
    """The currency a project's costs and deal amounts are in (ISO 4217)."""

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, related_name="cost_currency", verbose_name=_("project")
    )
    currency = models.CharField(
        _("currency"),
        max_length=3,
        default="RUB",
        validators=[RegexValidator(CURRENCY_RE, _("Use a three-letter ISO 4217 code, e.g. RUB, USD, EUR."))],
    )

    class Meta:
        verbose_name = _("cost currency")
        verbose_name_plural = _("cost currencies")

    def __str__(self):
        return f"{self.project}: {self.currency}"


class Cost(models.Model):
    class Origin(models.TextChoices):
        CSV = "csv", _("CSV upload")
        API = "api", _("API")
        ADMIN = "admin", _("Admin")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="costs", verbose_name=_("project"))
    day = models.DateField(_("day"), help_text=_("In the project's time zone"))
    source = models.CharField(_("source"), max_length=200, help_text=_("e.g. yandex, google"))
    medium = models.CharField(_("medium"), max_length=200, blank=True, help_text=_("e.g. cpc"))
    campaign = models.CharField(_("campaign"), max_length=200, blank=True)
    amount = models.DecimalField(_("amount"), max_digits=14, decimal_places=2, validators=[MinValueValidator(0)])
    origin = models.CharField(_("origin"), max_length=8, choices=Origin.choices, default=Origin.ADMIN)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("cost")
        verbose_name_plural = _("costs")
        ordering = ["-day", "source", "medium", "campaign"]
        constraints = [
            models.UniqueConstraint(fields=["project", "day", "source", "medium", "campaign"], name="cost_unique_key"),
            models.CheckConstraint(condition=models.Q(amount__gte=0), name="cost_amount_not_negative"),
        ]
        indexes = [models.Index(fields=["project", "day"], name="cost_project_day")]

    def __str__(self):
        return f"{self.day} {self.source}/{self.medium}/{self.campaign}: {self.amount}"
