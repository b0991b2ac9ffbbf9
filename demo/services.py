"""Demo mode (DEBUG only): a demo project and a page that can send itself a letter."""

import secrets
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.html import escape
from django.utils.translation import gettext

from engagement.models import EngagementSettings, Message, Origin
from engagement.services import message_track
from mailbox_sync.models import Letter, Mailbox
from mailbox_sync.services import ingest_raw, mailbox_set_password
from projects.models import Membership, Project
from substitution.models import Address, Block, Pool, Rule
from substitution.services import pool_fill
from tracker.models import Site, SiteDomain

DEMO_PROJECT = "Demo project"
DEMO_EMAIL = "hello@demo-shop.test"
DEMO_SUPPORT_EMAIL = "support@demo-shop.test"
DEMO_ADMIN = "demo"


def demo_mode() -> bool:
    return bool(settings.DEBUG and settings.DEMO)


def require_demo_mode():
    if not demo_mode():
        raise PermissionDenied("Demo mode needs DEBUG=1 and DEMO=1.")


@transaction.atomic
def demo_setup() -> tuple[Site, str]:
    """Create (once) the demo project, site, two tracked addresses (hello@
    and support@, each its block, pool and rule) and mailbox, and give the
    demo admin a fresh password. Returns the site and that password."""
    require_demo_mode()
    project, _ = Project.objects.get_or_create(name=DEMO_PROJECT, defaults={"time_zone": "Europe/Moscow"})
    site, _ = Site.objects.get_or_create(project=project, name="Demo shop", defaults={"original_email": DEMO_EMAIL})
    for domain in ("localhost", "127.0.0.1"):
        SiteDomain.objects.get_or_create(site=site, domain=domain)
    pool, _ = Pool.objects.get_or_create(
        project=project, name="Demo pool", defaults={"base_email": DEMO_EMAIL, "size": 10}
    )
    pool_fill(pool)
    block, _ = Block.objects.get_or_create(project=project, name="Email in the page")
    rule, created = Rule.objects.get_or_create(project=project, name="Every visitor", defaults={"pool": pool})
    if created:
        rule.sites.add(site)
        rule.blocks.add(block)
    support_pool, _ = Pool.objects.get_or_create(
        project=project, name="Support pool", defaults={"base_email": DEMO_SUPPORT_EMAIL, "size": 10}
    )
    pool_fill(support_pool)
    support, _ = Block.objects.get_or_create(
        project=project, name="Support address", defaults={"original_email": DEMO_SUPPORT_EMAIL}
    )
    rule, created = Rule.objects.get_or_create(
        project=project, name="Support questions", defaults={"pool": support_pool, "order": 1}
    )
    if created:
        rule.sites.add(site)
        rule.blocks.add(support)
    if not Mailbox.objects.filter(project=project).exists():
        mailbox = Mailbox(
            project=project,
            name="Demo inbox (letters from the demo page)",
            host="demo.invalid",
            port=993,
            username=DEMO_EMAIL,
            active=False,
        )
        mailbox_set_password(mailbox, secrets.token_urlsafe(16))
        mailbox.save()
    password = secrets.token_urlsafe(12)
    user, _ = get_user_model().objects.get_or_create(username=DEMO_ADMIN, defaults={"email": "demo@demo-shop.test"})
    user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    Membership.objects.get_or_create(project=project, user=user, defaults={"role": Membership.Role.MANAGER})
    # Outgoing letters are tracked in the demo (off by default in a real project).
    EngagementSettings.objects.update_or_create(project=project, defaults={"tracking_enabled": True})
    return site, password


def demo_site() -> Site | None:
    return Site.objects.filter(project__name=DEMO_PROJECT).first()


def demo_blocks(site: Site) -> dict[str, Block]:
    """The demo page's two blocks by their original address."""
    blocks = Block.objects.filter(project=site.project, name__in=["Email in the page", "Support address"])
    return {block.original_email or site.original_email.lower(): block for block in blocks}


def send_test_letter(*, site: Site, to: str, sender: str, subject: str, body: str) -> Letter:
    """A letter to the address the demo page shows, through the same pipeline
    as a letter read over IMAP (arrival time: now)."""
    require_demo_mode()
    to = to.strip().lower()
    allowed = {site.original_email.lower(), DEMO_SUPPORT_EMAIL} | set(
        Address.objects.filter(pool__project=site.project).values_list("email", flat=True)
    )
    if to not in allowed:
        raise ValueError(gettext("The test letter may only go to the demo site's own addresses."))
    mailbox = Mailbox.objects.filter(project=site.project).order_by("id").first()
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Delivered-To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(timezone.now())
    message["Message-ID"] = make_msgid(domain="demo-shop.test")
    message.set_content(body)
    return ingest_raw(mailbox=mailbox, raw=message.as_bytes(), origin=Letter.Origin.DEMO, received_at=timezone.now())


DEMO_LETTER = """<!doctype html><html><head><meta charset="utf-8"><title>{subject}</title></head>
<body style="font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto">
<p>{greeting}</p>
<p>{text} <a href="{price_url}">{price}</a>.</p>
<p>{signature}</p>
</body></html>"""


def send_tracked_letter(*, site: Site, to: str, base_url: str) -> tuple[Message, str]:
    """A letter from the demo shop to `to` made tracked by the messages API's
    own service: returns the message and that recipient's tracked HTML, which
    the demo's inbox shows as a mail client would (loading its pixel; a click
    on its link goes through the signed redirect back to the demo page)."""
    require_demo_mode()
    subject = gettext("Our price list")
    html = DEMO_LETTER.format(
        subject=escape(subject),
        greeting=escape(gettext("Hello!")),
        text=escape(gettext("Thank you for your letter. Here is our")),
        price_url=escape(f"{base_url}/demo/?utm_source=price_letter&utm_medium=email&utm_campaign=demo"),
        price=escape(gettext("price list")),
        signature=escape(gettext("The demo shop")),
    )
    tracked = message_track(
        project_id=site.project_id,
        origin=Origin.API,
        html=html,
        recipients=[to.strip().lower()],
        subject=subject,
        campaign="demo",
    )
    return tracked.message, tracked.copies[0].html
