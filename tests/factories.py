"""Small builders for the objects most tests need (real rows, real services)."""

from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from django.utils import timezone

from mailbox_sync.models import Mailbox
from mailbox_sync.services import mailbox_set_password
from projects.models import Project
from substitution.models import Block, Pool, Rule
from substitution.services import pool_fill
from tracker.models import Site, SiteDomain


@dataclass
class Setup:
    project: Project
    site: Site
    pool: Pool
    block: Block
    rule: Rule
    mailbox: Mailbox


def make_setup(
    *,
    name="Shop",
    original="info@shop.test",
    domains=("127.0.0.1", "shop.test"),
    pool_size=5,
    hold_minutes=30,
    policy=Pool.ExhaustedPolicy.ORIGINAL,
    imap_host="127.0.0.1",
    imap_port=993,
    imap_user=None,
    imap_password="secret",
) -> Setup:
    project = Project.objects.create(name=name)
    site = Site.objects.create(project=project, name=f"{name} site", original_email=original)
    for domain in domains:
        SiteDomain.objects.create(site=site, domain=domain)
    pool = Pool.objects.create(
        project=project,
        name=f"{name} pool",
        base_email=original,
        size=pool_size,
        hold_minutes=hold_minutes,
        exhausted_policy=policy,
    )
    pool_fill(pool)
    block = Block.objects.create(project=project, name="Email in page")
    rule = Rule.objects.create(project=project, name="All visitors", pool=pool)
    rule.sites.add(site)
    rule.blocks.add(block)
    mailbox = Mailbox(
        project=project,
        name=f"{name} inbox",
        host=imap_host,
        port=imap_port,
        security=Mailbox.Security.NONE,
        username=imap_user or f"{name.lower()}-{project.pk}@example.com",
    )
    mailbox_set_password(mailbox, imap_password)
    mailbox.save()
    return Setup(project, site, pool, block, rule, mailbox)


def letter_bytes(
    *,
    to,
    sender="Ivan Petrov <ivan@client.test>",
    subject="Price list, please",
    body="Hello! Please send the price list.",
    date=None,
    message_id=None,
    headers=None,
    received=None,
) -> bytes:
    message = EmailMessage()
    if received is not None:
        message["Received"] = f"from mx.client.test by mx.shop.test; {format_datetime(received)}"
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(date or timezone.now())
    if message_id is not False:
        message["Message-ID"] = message_id or make_msgid(domain="client.test")
    for key, value in (headers or {}).items():
        message[key] = value
    message.set_content(body)
    return message.as_bytes()


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)
