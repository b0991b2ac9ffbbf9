"""Small display helpers for the journal's templates."""

from datetime import timedelta
from urllib.parse import urlsplit

from django import template
from django.utils.html import format_html_join
from django.utils.translation import gettext as _

from ..selectors import LOW_CONFIDENCE, NO_SOURCE

register = template.Library()


@register.filter
def confidence(match_kind: str) -> str:
    """ "low", "none" or "": the CSS class that marks how far to trust a match."""
    if match_kind in LOW_CONFIDENCE:
        return "low"
    if match_kind in NO_SOURCE:
        return "none"
    return ""


@register.filter
def web_link(url: str) -> str:
    """The URL when it is safe as a link (http or https only: a visitor's page
    context could carry `javascript:`), else "" and the template shows text."""
    try:
        scheme = urlsplit(url or "").scheme.lower()
    except ValueError:
        return ""
    return url if scheme in ("http", "https") else ""


@register.filter
def duration(value: timedelta | None) -> str:
    if value is None:
        return ""
    minutes = int(value.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [
        _("%(days)d d") % {"days": days} if days else "",
        _("%(hours)d h") % {"hours": hours} if hours else "",
        _("%(minutes)d min") % {"minutes": minutes} if minutes or not (days or hours) else "",
    ]
    return " ".join(part for part in parts if part)


@register.filter
def share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "—"


# A report's charts hold hundreds of shapes: written in one call each, not
# through the template engine shape by shape (the same markup, a tenth of the time).
@register.filter
def svg_bars(segments):
    """The stacked bars: <rect> with a <title> each."""
    return format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>\n',
        ((bar.x, bar.y, bar.width, bar.height, bar.colour, bar.title) for bar in segments),
    )


@register.filter
def svg_dots(line):
    """A line's points: <circle> with a <title> each."""
    return format_html_join(
        "",
        '<circle cx="{}" cy="{}" r="3" fill="{}"><title>{}</title></circle>',
        ((dot.x, dot.y, line.colour, dot.text) for dot in line.dots),
    )
