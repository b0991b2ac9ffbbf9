"""Health conditions: a way tracking stopped working (a mailbox that does
not sync, a pool run dry, a silent snippet, blocks missing on pages, a CRM
that refuses webhooks). A row is one spell of a condition, from when it
began to when it ended; at most one is open per project, kind and subject."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from projects.models import Project


class Kind(models.TextChoices):
    MAILBOX_FAILING = "mailbox_failing", _("Mailbox does not sync")
    POOL_EXHAUSTED = "pool_exhausted", _("Pool ran dry")
    POOL_NEARLY_FULL = "pool_nearly_full", _("Pool above 90% at peak")
    SNIPPET_SILENT = "snippet_silent", _("Snippet silent")
    BLOCK_MISSING = "block_missing", _("Block's original address missing on pages")
    WEBHOOKS_FAILING = "webhooks_failing", _("Webhooks to a CRM failing")


class Condition(models.Model):
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="health_conditions", verbose_name=_("project")
    )
    kind = models.CharField(_("kind"), max_length=24, choices=Kind.choices)
    subject = models.CharField(
        _("subject"), max_length=200, help_text=_("What it is about, e.g. mailbox:12 or site:3:shop.example")
    )
    summary = models.CharField(_("summary"), max_length=500)
    details = models.JSONField(_("details"), default=dict, blank=True)
    started_at = models.DateTimeField(_("started at"))
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)

    class Meta:
        verbose_name = _("health condition")
        verbose_name_plural = _("health")
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "kind", "subject"], condition=Q(ended_at__isnull=True), name="condition_one_open"
            )
        ]
        indexes = [models.Index(fields=["project", "ended_at"], name="condition_project_open")]

    def __str__(self):
        return self.summary

    @property
    def is_open(self) -> bool:
        return self.ended_at is None
