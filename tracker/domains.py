"""A site's domains: the names the snippet may report from, the referrers
treated as none, and which of a site's domains a host belongs to."""

import re
from functools import lru_cache
from urllib.parse import urlsplit

DOMAIN_RE = re.compile(r"\A(?=.{1,253}\Z)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}\Z")


@lru_cache(maxsize=4096)
def host_of(url: str) -> str:
    """The host a URL or Origin names, lower case, without "www." (cached:
    collect asks it of every request's Origin and referrer)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.lower().removeprefix("www.")


@lru_cache(maxsize=256)
def parse_domains(text: str) -> tuple[str, ...]:
    """A site's list of domains, one a line ("#" starts a comment); a pasted
    URL or "*.example.com" is cut down to the domain."""
    domains = []
    for line in (text or "").splitlines():
        for word in line.split("#", 1)[0].replace(",", " ").split():
            word = word.strip().lower()
            if "/" in word:
                word = host_of(word if "//" in word else "//" + word) or word
            word = word.removeprefix("*.").removeprefix("www.").strip(".")
            try:
                word = word.encode("idna").decode("ascii")  # referrers carry punycode
            except UnicodeError:
                pass  # left as typed; validation names it
            if word and word not in domains:
                domains.append(word)
    return tuple(domains)


def domain_names(site) -> tuple[tuple[int, str], ...]:
    """A site's domains as domain_of matches them: (SiteDomain id, name without www.)."""
    return tuple(sorted((d.pk, d.domain.lower().removeprefix("www.")) for d in site.domains.all()))


def domain_of(domains: tuple[tuple[int, str], ...], host: str) -> int | None:
    """The SiteDomain id (of `domains`, see domain_names) a host belongs to:
    the domain itself or a subdomain."""
    host = host.lower().removeprefix("www.")
    for domain_id, name in domains:
        if host == name or host.endswith("." + name):
            return domain_id
    return None
