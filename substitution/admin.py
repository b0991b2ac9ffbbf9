from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from projects.admin_scoping import ScopedAdmin, ScopedTabularInline

from . import pools, selectors, services
from .models import Address, Block, Lease, Pool, PoolExhaustion, Rule, RuleCondition, StaticAddress


class PoolForm(forms.ModelForm):
    upload_text = forms.CharField(
        label=_("Addresses to add"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=_("Uploaded pools: paste real addresses, one per line (or comma-separated)."),
    )
    upload_file = forms.FileField(label=_("…or a CSV file"), required=False)

    class Meta:
        model = Pool
        fields = [
            "project",
            "name",
            "kind",
            "base_email",
            "size",
            "hold_minutes",
            "exhausted_policy",
            "max_live_leases_per_ip",
        ]

    def clean(self):
        data = super().clean()
        text = data.get("upload_text") or ""
        upload = data.get("upload_file")
        if upload is not None:
            if upload.size > 5 * 1024 * 1024:
                raise forms.ValidationError(_("The CSV file is larger than 5 MB."))
            text += "\n" + upload.read().decode("utf-8-sig", errors="replace")
        self.uploaded = []
        kind = data.get("kind") or self.instance.kind
        if text.strip():
            if kind != Pool.Kind.UPLOADED:
                raise forms.ValidationError(_("Only an uploaded pool takes a list of addresses."))
            probe = Pool(project=data.get("project") or self.instance.project, base_email=data.get("base_email") or "")
            probe.pk = self.instance.pk
            fresh, errors = pools.validate_uploaded_addresses(probe, text)
            if errors:
                more = len(errors) - 20
                shown = errors[:20] + ([_("…and %(count)d more") % {"count": more}] if more > 0 else [])
                raise forms.ValidationError(shown)
            self.uploaded = fresh
        elif kind == Pool.Kind.UPLOADED and not self.instance.pk:
            raise forms.ValidationError(_("An uploaded pool needs its addresses."))
        return data


@admin.register(Pool)
class PoolAdmin(ScopedAdmin):
    form = PoolForm
    list_display = ["name", "project", "kind", "base_email", "size", "hold_minutes", "live_leases", "exhausted_policy"]
    list_filter = ["kind", "exhausted_policy"]
    search_fields = ["name", "base_email"]
    readonly_fields = ["health"]

    def get_readonly_fields(self, request, obj=None):
        fixed = ["kind", "base_email"] if obj is not None else []
        return fixed + self.readonly_fields

    @admin.display(description=_("Live leases"))
    def live_leases(self, obj):
        return selectors.live_lease_count(obj, timezone.now()) if obj.pk else 0

    @admin.display(description=_("Pool health"))
    def health(self, obj):
        if not obj.pk:
            return _("Shown once the pool is saved.")
        now = timezone.now()
        health = selectors.pool_health(obj, now)
        overall = format_html("{}{}", render_health(health), render_advice(health.advice))
        blocks = selectors.pool_blocks(obj)
        if len(blocks) < 2:
            return overall
        # A pool serving several blocks: the same figures for each block's leases.
        per_block = format_html_join(
            "",
            "<h4>{}</h4>{}",
            (
                (
                    gettext("Block “%(name)s”") % {"name": block.name},
                    render_health(selectors.pool_health(obj, now, block_id=block.pk), overall=False),
                )
                for block in blocks
            ),
        )
        return format_html("{}<h3>{}</h3>{}", overall, gettext("By block"), per_block)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if getattr(form, "uploaded", None):
            added = pools.pool_add_uploaded(obj, form.uploaded)
            self.message_user(
                request, ngettext("%(count)d address added.", "%(count)d addresses added.", added) % {"count": added}
            )
            return
        try:
            changed = services.pool_fill(obj)
        except ValueError as error:
            self.message_user(request, str(error), messages.ERROR)
            return
        if changed > 0:
            said = ngettext("%(count)d address issued.", "%(count)d addresses issued.", changed)
            self.message_user(request, said % {"count": changed})
        elif changed < 0:
            said = ngettext(
                "%(count)d free address set aside; live leases were kept.",
                "%(count)d free addresses set aside; live leases were kept.",
                -changed,
            )
            self.message_user(request, said % {"count": -changed})


@admin.register(Address)
class AddressAdmin(ScopedAdmin):
    project_path = "pool__project"
    list_display = ["email", "pool", "active", "last_released_at"]
    list_filter = ["active"]
    search_fields = ["email", "token"]
    readonly_fields = ["pool", "email", "token", "last_released_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Block)
class BlockAdmin(ScopedAdmin):
    list_display = ["name", "project", "kind", "selector", "original_email"]
    list_filter = ["kind"]
    search_fields = ["name", "selector", "original_email"]


@admin.register(StaticAddress)
class StaticAddressAdmin(ScopedAdmin):
    list_display = ["name", "email", "channel", "source", "campaign", "active", "project"]
    list_filter = ["active", "channel"]
    search_fields = ["name", "email", "source", "campaign"]


class RuleConditionInline(ScopedTabularInline):
    model = RuleCondition
    parent_project_path = "project"
    extra = 1


@admin.register(Rule)
class RuleAdmin(ScopedAdmin):
    """Rules in their order (the order decides, so it is shown and edited in
    the list), with a search box and filters by site, block, kind and pool."""

    list_display = ["name", "project", "order", "active", "kind", "pool", "static_address", "covered_blocks"]
    list_editable = ["order", "active"]
    list_filter = [
        "kind",
        "active",
        ("sites", admin.RelatedOnlyFieldListFilter),
        ("blocks", admin.RelatedOnlyFieldListFilter),
        ("pool", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = [
        "name",
        "pool__name",
        "static_address__email",
        "blocks__name",
        "blocks__original_email",
        "sites__name",
        "conditions__value",
    ]
    ordering = ["order", "id"]
    filter_horizontal = ["sites", "blocks"]
    inlines = [RuleConditionInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("blocks")

    @admin.display(description=_("Blocks"))
    def covered_blocks(self, obj):
        return ", ".join(block.name for block in obj.blocks.all())


@admin.register(Lease)
class LeaseAdmin(ScopedAdmin):
    project_path = "pool__project"
    list_display = [
        "address",
        "block",
        "visitor",
        "started_at",
        "last_activity_at",
        "expires_at",
        "released_at",
        "end_reason",
    ]
    list_filter = ["end_reason", ("block", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["address__email", "visitor__vid"]
    date_hierarchy = "started_at"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(PoolExhaustion)
class PoolExhaustionAdmin(ScopedAdmin):
    project_path = "pool__project"
    list_display = ["pool", "at", "policy"]
    readonly_fields = ["pool", "at", "policy"]

    def has_add_permission(self, request, obj=None):
        return False


def render_health(health, overall: bool = True) -> str:
    """The numbers and a small bar chart of the daily peaks (inline SVG). For
    one block of the pool (`overall` false): its own live leases and peaks; the
    size, exhaustions and any warning belong to the whole pool."""
    top = max([p for _d, p in health.peaks] + [health.size, 1])
    width, height, bar = 16 * len(health.peaks), 60, 12
    bars = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="#447e9b"><title>{}: {}</title></rect>',
        (
            (i * 16, height - round(height * peak / top), bar, round(height * peak / top), day.isoformat(), peak)
            for i, (day, peak) in enumerate(health.peaks)
        ),
    )
    size_line = height - round(height * health.size / top)
    chart = format_html(
        '<svg width="{}" height="{}" role="img" aria-label="{}">{}'
        '<line x1="0" x2="{}" y1="{}" y2="{}" stroke="#ba2121" stroke-dasharray="3"><title>{}</title></line>'
        "</svg>",
        width,
        height + 1,
        gettext("Peak concurrent leases per day"),
        bars,
        width,
        size_line,
        size_line,
        gettext("pool size"),
    )
    warning = (
        format_html(
            '<p style="color:#ba2121"><strong>{}</strong> {}</p>',
            gettext("The pool is too small:"),
            gettext("recommended size %(size)s.") % {"size": health.recommended},
        )
        if health.too_small and overall
        else ""
    )
    if not overall:
        figures = format_html(
            gettext("Live leases now: <strong>{live}</strong> · peak (7 days): {peak}"),
            live=health.live,
            peak=max([p for _d, p in health.peaks], default=0),
        )
        return format_html("<p>{}</p>{}", figures, chart)
    figures = format_html(
        gettext(
            "Live leases now: <strong>{live}</strong> of {size} addresses · peak (7 days): {peak} · "
            "exhaustions (7 days): {exhaustions} · recommended size: {recommended}"
        ),
        live=health.live,
        size=health.size,
        peak=max([p for _d, p in health.peaks], default=0),
        exhaustions=health.exhaustions,
        recommended=health.recommended or "—",
    )
    return format_html("<p>{}</p>{}{}", figures, warning, chart)


def render_advice(advice: pools.SizeAdvice) -> str:
    """Which recommendation is shown and what it rests on, with the simulated curve."""
    simulated = advice.simulated
    if advice.basis == pools.SIMULATED:
        said = gettext(
            "Recommended size %(size)s: simulated on the sites' own traffic of the last 7 days "
            "(%(share)s of letters credited to the right visitor, target %(target)s; computed %(when)s)."
        ) % {
            "size": advice.size,
            "share": f"{simulated.accuracy:.1%}" if simulated.accuracy is not None else "—",
            "target": f"{simulated.target:.1%}",
            "when": date_format(timezone.localtime(simulated.computed_at), "DATETIME_FORMAT"),
        }
    else:
        reasons = {
            "not_enough_traffic": gettext("too little traffic in the last 7 days to simulate"),
            "pending": gettext("the simulation on the sites' own traffic is being computed"),
            "not_reached": gettext("no size simulated reached the target"),
            "failed": gettext("the simulation failed"),
        }
        reason = reasons.get(simulated.status, "") if simulated is not None else ""
        said = gettext("Recommended size %(size)s: the peak of the last 7 days with a 25%% margin.") % {
            "size": advice.size or "—"
        }
        if reason:
            said = format_html("{} ({})", said, reason)
    chart = ""
    if simulated is not None and simulated.curve:
        chart = curve_svg(simulated.curve, simulated.target, simulated.size)
    return format_html("<p>{}</p>{}", said, chart)


def curve_svg(curve, target: float, recommended: int | None, width: int = 320, height: int = 120) -> str:
    """An inline chart of (size, share of correct visitors) points, sizes on a
    rank scale (evenly spaced) so a wide range stays readable."""
    if not curve:
        return ""
    low = min(min(share for _size, share in curve), target) - 0.01
    low = max(0.0, min(low, 0.9))

    def y(share):
        return round(height - (share - low) / (1 - low) * height, 1)

    step = width / max(len(curve) - 1, 1)
    xs = [round(i * step, 1) for i in range(len(curve))]
    line = " ".join(f"{x},{y(share)}" for x, (_size, share) in zip(xs, curve, strict=True))
    dots = format_html_join(
        "",
        '<circle cx="{}" cy="{}" r="3" fill="{}"><title>{}</title></circle>',
        (
            (
                x,
                y(share),
                "#417690" if size == recommended else "#79aec8",
                gettext("%(size)s addresses: %(share)s correct visitors") % {"size": size, "share": f"{share:.1%}"},
            )
            for x, (size, share) in zip(xs, curve, strict=True)
        ),
    )
    labels = format_html_join(
        "",
        '<text x="{}" y="{}" font-size="10" text-anchor="middle">{}</text>',
        ((x, height + 14, size) for x, (size, _share) in zip(xs, curve, strict=True)),
    )
    return format_html(
        '<svg width="{}" height="{}" role="img" aria-label="{}" style="overflow:visible;margin:4px 8px">'
        '<line x1="0" x2="{}" y1="{}" y2="{}" stroke="#ba2121" stroke-dasharray="3"><title>{}</title></line>'
        '<polyline points="{}" fill="none" stroke="#417690"/>{}{}</svg>',
        width,
        height + 16,
        gettext("Correct visitors against pool size"),
        width,
        y(target),
        y(target),
        gettext("target %(share)s") % {"share": f"{target:.1%}"},
        line,
        dots,
        labels,
    )
