"""Where a visit came from: channel, source and keyword, from UTM tags, click
ids and the referrer, the way analytics tools classify traffic."""

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from .models import Channel

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
CLICK_ID_KEYS = ("gclid", "yclid", "fbclid", "msclkid", "ttclid", "wbraid", "gbraid")
PAID_CLICK_IDS = ("gclid", "yclid", "msclkid", "wbraid", "gbraid")
PAID_MEDIUMS = {"cpc", "ppc", "paid", "cpm", "cpa", "paidsearch", "paid_search", "display", "banner", "retargeting"}
SOCIAL_MEDIUMS = {"social", "social-network", "social_network", "sm", "smm"}
EMAIL_MEDIUMS = {"email", "e-mail", "newsletter", "mail"}

# Search engine domain fragment → query parameter holding the keyword.
SEARCH_ENGINES = {
    "google.": "q",
    "yandex.": "text",
    "ya.ru": "text",
    "bing.com": "q",
    "duckduckgo.com": "q",
    "yahoo.": "p",
    "go.mail.ru": "q",
    "rambler.ru": "query",
    "baidu.com": "wd",
    "ecosia.org": "q",
}
SOCIAL_DOMAINS = (
    "facebook.com",
    "instagram.com",
    "vk.com",
    "ok.ru",
    "t.me",
    "telegram.org",
    "twitter.com",
    "x.com",
    "linkedin.com",
    "youtube.com",
    "tiktok.com",
    "pinterest.",
    "reddit.com",
    "dzen.ru",
    "l.facebook.com",
)


@dataclass
class Source:
    channel: str
    source: str
    keyword: str
    utm: dict
    click_ids: dict


def host_of(url: str) -> str:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.lower().removeprefix("www.")


def _host_is(host: str, pattern: str) -> bool:
    """`pattern` is a domain (matches itself and its subdomains) or, ending in a
    dot, a name under any suffix ("google." matches google.com, news.google.co.uk);
    never a bare substring, so netflix.com is not x.com and olya.ru is not ya.ru."""
    if not host:
        return False
    if pattern.endswith("."):
        return host.startswith(pattern) or "." + pattern in host
    return host == pattern or host.endswith("." + pattern)


def classify(url: str, referrer: str, own_host: str = "") -> Source:
    try:
        query = parse_qs(urlsplit(url).query)
    except ValueError:
        query = {}
    utm = {key: (query.get(key) or [""])[0][:200] for key in UTM_KEYS}
    click_ids = {key: query[key][0][:200] for key in CLICK_ID_KEYS if query.get(key)}
    ref_host = host_of(referrer)
    if ref_host and own_host and (ref_host == own_host or ref_host.endswith("." + own_host)):
        ref_host = ""  # navigation inside the site is not a source
    medium = utm["utm_medium"].lower()
    search_param = next((param for frag, param in SEARCH_ENGINES.items() if _host_is(ref_host, frag)), None)
    keyword = utm["utm_term"]
    if not keyword and search_param:
        try:
            keyword = (parse_qs(urlsplit(referrer).query).get(search_param) or [""])[0][:200]
        except ValueError:
            keyword = ""

    if medium in PAID_MEDIUMS or any(k in click_ids for k in PAID_CLICK_IDS):
        channel = Channel.PAID
    elif medium in EMAIL_MEDIUMS:
        channel = Channel.EMAIL
    elif medium in SOCIAL_MEDIUMS or any(_host_is(ref_host, d) for d in SOCIAL_DOMAINS):
        channel = Channel.SOCIAL
    elif medium == "organic" or search_param:
        channel = Channel.ORGANIC
    elif utm["utm_source"] or ref_host:
        channel = Channel.REFERRAL
    else:
        channel = Channel.DIRECT
    source = (
        utm["utm_source"]
        or ref_host
        or ("google" if "gclid" in click_ids else "yandex" if "yclid" in click_ids else "")
    )
    return Source(channel=channel, source=source[:200], keyword=keyword, utm=utm, click_ids=click_ids)
