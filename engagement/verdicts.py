"""Who fetched a pixel or followed a link: a person, or which kind of machine.

One event alone (`judge`), in this order, the first that applies:
- HEAD request, or no user agent → scanner;
- from a network of scanners that are always machines (Microsoft EOP,
  Barracuda) → scanner;
- Google's image proxy (`GoogleImageProxy` in the UA) → gmail_proxy: a real
  open by a person, without their device (never dropped as a bot);
- Gmail's prefetch UA (`… Edge/12.246 Mozilla/5.0`) → gmail_prefetch;
- Yahoo's image proxy (`YahooMailProxy`) → yahoo_proxy;
- UA exactly `Mozilla/5.0` from Apple's Private Relay egress networks → apple_mpp;
- from a network of scanners that are probably machines (Proofpoint, Mimecast;
  Cisco publishes none, so only a loaded list adds it) → scanner, marked probable;
- from the relay client's own network within the first minutes → self;
- a UA of a known crawler, or a bare `Mozilla/5.0` from elsewhere → unknown;
- otherwise → human.
What needs other events (bursts of clicks, the hidden link) is decided when a
batch is recorded (engagement.recording)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from tracker.devices import inspect_user_agent
from tracker.geo import truncate_ip

from .models import NetworkKind, Verdict

BARE_UA = "Mozilla/5.0"
GMAIL_PROXY_MARK = "GoogleImageProxy"
GMAIL_PREFETCH_TAIL = "Edge/12.246 Mozilla/5.0"
YAHOO_PROXY_MARK = "YahooMailProxy"


@dataclass(frozen=True)
class Judgement:
    verdict: str
    reason: str = ""
    probable: bool = False
    device_type: str = ""


def judge(
    *,
    method: str,
    user_agent: str,
    ip: str,
    lists: dict,
    sender_network: str | None,
    sent_at: datetime,
    at: datetime,
    self_window: timedelta,
) -> Judgement:
    ua = (user_agent or "").strip()
    if method == "HEAD":
        return Judgement(Verdict.SCANNER, "HEAD request")
    if not ua:
        return Judgement(Verdict.SCANNER, "no user agent")
    if ip and ip in lists[NetworkKind.SCANNER]:
        return Judgement(Verdict.SCANNER, "scanner network")
    if GMAIL_PROXY_MARK in ua:
        return Judgement(Verdict.GMAIL_PROXY, "Google image proxy")
    if ua.endswith(GMAIL_PREFETCH_TAIL):
        return Judgement(Verdict.GMAIL_PREFETCH, "Gmail prefetch user agent")
    if YAHOO_PROXY_MARK in ua:
        return Judgement(Verdict.YAHOO_PROXY, "Yahoo image proxy")
    if ua == BARE_UA and ip and ip in lists[NetworkKind.APPLE_MPP]:
        return Judgement(Verdict.APPLE_MPP, "Mozilla/5.0 from Apple's network")
    if ip and ip in lists[NetworkKind.SCANNER_PROBABLE]:
        return Judgement(Verdict.SCANNER, "probable scanner network", probable=True)
    if sender_network and at - sent_at <= self_window and truncate_ip(ip) == sender_network:
        return Judgement(Verdict.SELF, "sender's network, just after sending")
    device = inspect_user_agent(ua)
    if ua == BARE_UA or device.is_bot:
        return Judgement(Verdict.UNKNOWN, "bare or crawler user agent")
    return Judgement(Verdict.HUMAN, device_type=device.device_type)
