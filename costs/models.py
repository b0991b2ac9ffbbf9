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


class CostWeek(models.Model):
    """The costs of a week (Monday to Sunday) per source / medium / campaign
    as the costs spell them: their sum and how many cost rows it holds, so a
    report of a period reads a row per week and group for its whole weeks
    instead of one per day. Kept by the cost table's trigger (PostgreSQL,
    migration 0005) in the same statement as the costs, whoever writes them;
    a group's row goes when its last cost of the week does. `project_id` is a
    bare id: a project deleted takes its costs, whose trigger takes these."""

    project_id = models.BigIntegerField(_("project"))
    week = models.DateField(_("week"), help_text=_("Its Monday"))
    source = models.CharField(_("source"), max_length=200)
    medium = models.CharField(_("medium"), max_length=200, blank=True)
    campaign = models.CharField(_("campaign"), max_length=200, blank=True)
    amount = models.DecimalField(_("amount"), max_digits=18, decimal_places=2, default=0)
    costs = models.IntegerField(_("cost rows"), default=0)

    class Meta:
        verbose_name = _("costs of a week")
        verbose_name_plural = _("costs of weeks")
        constraints = [
            models.UniqueConstraint(
                fields=["project_id", "week", "source", "medium", "campaign"], name="cost_week_unique_key"
            )
        ]

    def __str__(self):
        return f"{self.week} {self.source}/{self.medium}/{self.campaign}: {self.amount}"


class CostSourceDay(models.Model):
    """The costs of a day per source as the costs spell it (their sum and
    how many cost rows it holds), for the charts' day-by-day cost per lead by
    source: a row per day and source instead of one per campaign. Kept by the
    cost table's trigger like `CostWeek` (migration 0006)."""

    project_id = models.BigIntegerField(_("project"))
    day = models.DateField(_("day"))
    source = models.CharField(_("source"), max_length=200)
    amount = models.DecimalField(_("amount"), max_digits=18, decimal_places=2, default=0)
    costs = models.IntegerField(_("cost rows"), default=0)

    class Meta:
        verbose_name = _("costs of a day by source")
        verbose_name_plural = _("costs of days by source")
        constraints = [
            models.UniqueConstraint(fields=["project_id", "day", "source"], name="cost_source_day_unique_key")
        ]

    def __str__(self):
        return f"{self.day} {self.source}: {self.amount}"


class DayGroup(models.Model):
    """One day (in the project's time zone) of one group of the end-to-end
    report, for one grouping; kept by `costs.rollups` so that a report reads
    days, not every lead and session. Unused key columns are empty; `ref` is
    the site, block or mailbox id (0 for none)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", verbose_name=_("project"))
    day = models.DateField(_("day"))
    grouping = models.CharField(_("grouping"), max_length=16)
    channel = models.CharField(_("channel"), max_length=16, blank=True)
    source = models.CharField(_("source"), max_length=200, blank=True)
    medium = models.CharField(_("medium"), max_length=200, blank=True)
    campaign = models.CharField(_("campaign"), max_length=200, blank=True)
    keyword = models.CharField(_("keyword"), max_length=200, blank=True)
    ref = models.BigIntegerField(_("site, block or mailbox"), default=0)

    KEY = ["project", "grouping", "day", "channel", "source", "medium", "campaign", "keyword", "ref"]

    class Meta:
        abstract = True


class ReportDay(DayGroup):
    """The leads of a day and group: how many, first contacts, deals, their amount."""

    leads = models.IntegerField(_("leads"), default=0)
    first_contacts = models.IntegerField(_("first contacts"), default=0)
    deals = models.IntegerField(_("deals"), default=0)
    amount = models.DecimalField(_("deal amount"), max_digits=18, decimal_places=2, default=0)

    class Meta:
        verbose_name = _("report day")
        verbose_name_plural = _("report days")
        constraints = [models.UniqueConstraint(fields=DayGroup.KEY, name="report_day_unique_key")]

    def __str__(self):
        return f"{self.day} {self.grouping}: {self.leads}"


class SessionDay(DayGroup):
    """The sessions of a day and group. Apart from the leads' days, so that
    collect adding a session never waits for a recount of leads."""

    sessions = models.IntegerField(_("sessions"), default=0)

    class Meta:
        verbose_name = _("sessions day")
        verbose_name_plural = _("sessions days")
        constraints = [models.UniqueConstraint(fields=DayGroup.KEY, name="session_day_unique_key")]

    def __str__(self):
        return f"{self.day} {self.grouping}: {self.sessions}"


class SessionDelta(models.Model):
    """Sessions added (n > 0) or removed (n < 0) since the last fold, one row
    per statement and group, written by the session table's triggers
    (PostgreSQL). Plain inserts: a new visitor never waits on another's
    sessions day; `costs.rollups.fold_session_deltas` moves them into the
    days (every minute, and before a report reads them). `project_id` and
    `site_id` are bare ids: a queue, not a relation (a project deleted
    meanwhile leaves rows the fold drops)."""

    project_id = models.BigIntegerField(_("project"))
    day = models.DateField(_("day"))
    channel = models.CharField(_("channel"), max_length=16, blank=True)
    source = models.CharField(_("source"), max_length=200, blank=True)
    medium = models.CharField(_("medium"), max_length=200, blank=True)
    campaign = models.CharField(_("campaign"), max_length=200, blank=True)
    keyword = models.CharField(_("keyword"), max_length=200, blank=True)
    site_id = models.BigIntegerField(_("site"))
    n = models.IntegerField(_("sessions"))

    class Meta:
        verbose_name = _("sessions to count")
        verbose_name_plural = _("sessions to count")

    def __str__(self):
        return f"{self.day}: {self.n:+d}"


class RollupState(models.Model):
    """The time zone a project's report days were counted in: the report
    reads them only while it is still the project's (else the raw rows)."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="+", verbose_name=_("project"))
    time_zone = models.CharField(_("time zone"), max_length=64)
    built_at = models.DateTimeField(_("built at"), auto_now=True)

    class Meta:
        verbose_name = _("report days state")
        verbose_name_plural = _("report days states")

    def __str__(self):
        return f"{self.project_id}: {self.time_zone}"
