"""A person's data among the visits: the sessions that led to their leads.

Tracker knows no addresses (leads, which name the person, live above it), so
its part takes the sessions' ids, found by attribution (`attribution.privacy.session_ids`).

Erasing a session keeps what reports count it by (its times, channel, source,
campaign tags, keyword, landing page, referrer, page views, device type, OS and
browser names, country) and drops what could single out the person or their
device: the user agent, the truncated IP address, the analytics client ids
(Google Analytics, Yandex Metrica), the ad click ids, the last pages seen,
the screen size, the language, the region and city, and OS / browser versions.
The visitor's random id stays: it names a browser's cookie, not a person, and
the leases and caches of the visitor are keyed by it.
"""

from lib.privacy import row

from .models import Session

ERASED = {
    "user_agent": "",
    "ip_truncated": None,
    "ga_client_id": "",
    "ym_client_id": "",
    "click_ids": {},
    "last_urls": [],
    "screen": "",
    "lang": "",
    "region": "",
    "city": "",
    "os_version": "",
    "browser_version": "",
}


def export_sessions(ids: list[int]) -> list[dict]:
    sessions = Session.objects.filter(pk__in=ids).select_related("visitor").order_by("started_at", "pk")
    return [
        {**row(session), "site_id": session.visitor.site_id, "visitor_vid": session.visitor.vid} for session in sessions
    ]


def erase_sessions(ids: list[int]) -> int:
    """Drop what identifies a person from these sessions; what reports count stays."""
    return Session.objects.filter(pk__in=ids).update(**ERASED)
