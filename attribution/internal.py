"""Letters from colleagues: a sender at one of the project's own mail domains
(its mailboxes', its sites' and blocks' original addresses', its pools')
is "internal", unless the domain is a public mail service, where a customer's
address and a colleague's look alike.

The public services are a maintained list in `data/public_mail_domains.txt`.
"""

from functools import cache
from pathlib import Path

from mailbox_sync.models import Mailbox
from substitution.models import Block, Pool
from tracker.models import Site

PUBLIC_MAIL_DOMAINS_FILE = Path(__file__).with_name("data") / "public_mail_domains.txt"


@cache
def public_mail_domains() -> frozenset[str]:
    lines = PUBLIC_MAIL_DOMAINS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.split("#", 1)[0].strip().lower() for line in lines) - {""}


def _domain(address: str) -> str:
    local, at, domain = (address or "").strip().lower().rpartition("@")
    return domain.rstrip(".") if at and local else ""


def own_mail_addresses(project_id: int) -> set[str]:
    """The project's own mail addresses, lowercased, in one query: its
    mailboxes' usernames, its sites' and blocks' original addresses and its
    pools' base addresses."""
    mailboxes = Mailbox.objects.filter(project_id=project_id).order_by().values_list("username")
    sites = Site.objects.filter(project_id=project_id).order_by().values_list("original_email")
    blocks = Block.objects.filter(project_id=project_id).order_by().values_list("original_email")
    pools = Pool.objects.filter(project_id=project_id).order_by().values_list("base_email")
    rows = mailboxes.union(sites, blocks, pools)
    return {address.strip().lower() for (address,) in rows} - {""}


def own_mail_domains(project_id: int, addresses: set[str] | None = None) -> set[str]:
    """The project's own mail domains (of `own_mail_addresses`, or of the
    `addresses` read with it before), public mail services left out."""
    if addresses is None:
        addresses = own_mail_addresses(project_id)
    return {_domain(a) for a in addresses} - {""} - public_mail_domains()


def is_internal(sender: str, own_domains: set[str]) -> bool:
    """A sender at one of `own_domains` or a subdomain of one (mx.shop.ru for
    shop.ru), but never at a public mail service."""
    domain = _domain(sender)
    if not domain or domain in public_mail_domains():
        return False
    parts = domain.split(".")
    return any(".".join(parts[i:]) in own_domains for i in range(len(parts) - 1))
