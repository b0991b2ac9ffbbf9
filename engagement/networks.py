"""The network lists verdicts are decided with: Apple's Private Relay egress
networks (Mail Privacy Protection), security scanners always a machine, and
scanners probably a machine. Each ships as a data file in
engagement/networks/ (its source and date in its comments); a list loaded with
`load_network_list` (a NetworkList row) replaces the shipped one.

A list is held as sorted, merged integer ranges per IP version, so a lookup
is one bisection however long the list."""

import bisect
import csv
import io
import ipaddress
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from django.utils import timezone

from .models import NetworkKind, NetworkList

DATA_DIR = Path(__file__).resolve().parent / "networks"
PUBLISHED_RE = re.compile(r"^#\s*Published:\s*(\d{4}-\d{2}-\d{2})", re.MULTILINE)


class ListError(ValueError):
    pass


@dataclass
class Ranges:
    starts: dict[int, list[int]]
    ends: dict[int, list[int]]
    count: int

    def __contains__(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        starts = self.starts.get(address.version)
        if not starts:
            return False
        value = int(address)
        at = bisect.bisect_right(starts, value) - 1
        return at >= 0 and value <= self.ends[address.version][at]


def parse(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Networks from a list: one a line, or the first column of a CSV (Apple's
    feed); `#` comments and blank lines skipped. Any other line is an error."""
    networks = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cell = row[0].split("#", 1)[0].strip() if row else ""
        if not cell:
            continue
        try:
            networks.append(ipaddress.ip_network(cell, strict=False))
        except ValueError:
            raise ListError(f"Line {number}: {cell[:60]!r} is not a network.") from None
    return networks


def build(networks) -> Ranges:
    starts, ends = {4: [], 6: []}, {4: [], 6: []}
    for version in (4, 6):
        for network in ipaddress.collapse_addresses(n for n in networks if n.version == version):
            starts[version].append(int(network.network_address))
            ends[version].append(int(network.broadcast_address))
    return Ranges(starts, ends, len(starts[4]) + len(starts[6]))


def shipped_text(kind: str) -> str:
    return (DATA_DIR / f"{kind}.txt").read_text()


def shipped_published(kind: str) -> date | None:
    found = PUBLISHED_RE.search(shipped_text(kind))
    return date.fromisoformat(found.group(1)) if found else None


_cache: dict[str, tuple[object, Ranges]] = {}


def lists() -> dict[str, Ranges]:
    """Every list, re-read only when a new one was loaded (one query)."""
    loaded = dict(NetworkList.objects.values_list("kind", "loaded_at"))
    result = {}
    for kind in NetworkKind.values:
        stamp = loaded.get(kind, "shipped")
        cached = _cache.get(kind)
        if cached is None or cached[0] != stamp:
            if kind in loaded:
                text = NetworkList.objects.filter(kind=kind).values_list("networks", flat=True).first() or ""
            else:
                text = shipped_text(kind)
            cached = (stamp, build(parse(text)))
            _cache[kind] = cached
        result[kind] = cached[1]
    return result


def network_list_load(*, kind: str, text: str, source: str, published_on: date | None = None) -> NetworkList:
    """Replace a list (validated whole first: a bad line loads nothing)."""
    if kind not in NetworkKind.values:
        raise ListError(f"Unknown list {kind!r}; one of {', '.join(NetworkKind.values)}.")
    networks = parse(text)
    if not networks:
        raise ListError("The list has no networks.")
    body = "\n".join(str(n) for n in networks) + "\n"
    row, _created = NetworkList.objects.update_or_create(
        kind=kind,
        defaults={"source": source[:500], "published_on": published_on, "loaded_at": timezone.now(), "networks": body},
    )
    return row
