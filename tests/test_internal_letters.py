"""Letters from colleagues are stored but are not leads ("internal"), unless
the sender's domain is a public mail service; a file letter dated in the
future is placed at the time it was read."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from attribution.internal import is_internal, own_mail_domains, public_mail_domains
from attribution.models import Lead
from mailbox_sync.models import Letter, Mailbox
from mailbox_sync.services import ingest_raw
from substitution.models import Block, Pool
from tests.factories import letter_bytes, make_setup

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 7, 31, 12, 0, tzinfo=UTC)
MAIN = "info@shop.test"


@pytest.fixture
def setup():
    return make_setup(original=MAIN, pool_size=3)


def deliver(setup, sender, at=T0):
    return ingest_raw(mailbox=setup.mailbox, raw=letter_bytes(to=MAIN, sender=sender), received_at=at)


def test_it_marks_a_colleague_at_the_sites_domain_internal_and_makes_no_lead(setup):
    letter = deliver(setup, "Anna <anna@shop.test>")
    assert letter.lead is None
    assert letter.not_lead_reason.startswith("internal")
    assert not Lead.objects.exists()


def test_it_treats_a_subdomain_of_an_own_domain_as_internal(setup):
    assert deliver(setup, "robot@crm.shop.test").not_lead_reason.startswith("internal")


def test_it_takes_the_domains_of_mailboxes_blocks_and_pools(setup):
    Block.objects.create(project=setup.project, name="Sales", original_email="sales@sales-dept.test")
    Pool.objects.create(project=setup.project, name="Other", base_email="hello@pool-domain.test", size=1)
    Mailbox.objects.filter(pk=setup.mailbox.pk).update(username="box@mailbox-domain.test")
    domains = own_mail_domains(setup.project.pk)
    assert {"shop.test", "sales-dept.test", "pool-domain.test", "mailbox-domain.test"} <= domains
    for sender in ("a@sales-dept.test", "b@pool-domain.test", "c@mailbox-domain.test"):
        assert deliver(setup, sender).not_lead_reason.startswith("internal"), sender
    assert not Lead.objects.exists()


def test_a_customer_at_a_public_mail_service_is_a_lead_even_when_the_project_uses_it(setup):
    Mailbox.objects.filter(pk=setup.mailbox.pk).update(username="shop.orders@gmail.com")
    assert "gmail.com" not in own_mail_domains(setup.project.pk)
    letter = deliver(setup, "Ivan <ivan.petrov@gmail.com>")
    assert letter.lead is not None
    assert letter.not_lead_reason == ""


def test_a_customer_at_another_domain_is_a_lead(setup):
    assert deliver(setup, "ivan@client.test").lead is not None


def test_a_domain_of_another_project_is_not_internal_here(setup):
    other = make_setup(name="Other", original="info@other-shop.test")
    assert "other-shop.test" in own_mail_domains(other.project.pk)
    assert deliver(setup, "buyer@other-shop.test").lead is not None


def test_the_public_mail_list_holds_the_common_services_and_no_comments():
    domains = public_mail_domains()
    assert {"gmail.com", "yandex.ru", "mail.ru", "outlook.com"} <= domains
    assert not any(d.startswith("#") or " " in d for d in domains)


def test_a_lookalike_domain_is_not_internal():
    assert not is_internal("x@notshop.test", {"shop.test"})
    assert is_internal("x@shop.test", {"shop.test"})
    assert not is_internal("", {"shop.test"})


# --- Arrival time of a file letter ---------------------------------------------


def test_a_file_letter_whose_only_time_is_a_future_date_header_is_placed_now(setup):
    future = timezone.now() + timedelta(days=3 * 365)
    before = timezone.now()
    letter = ingest_raw(mailbox=setup.mailbox, raw=letter_bytes(to=MAIN, date=future))
    after = timezone.now()
    assert before <= letter.received_at <= after
    assert abs(letter.date_header - future) < timedelta(seconds=1)  # shown as written
    assert Letter.objects.get(pk=letter.pk).origin == Letter.Origin.FILE
    assert letter.lead.created_at == letter.received_at


def test_a_file_letter_with_a_past_date_header_keeps_that_date(setup):
    letter = ingest_raw(mailbox=setup.mailbox, raw=letter_bytes(to=MAIN, date=T0))
    assert letter.received_at == T0


def test_a_future_date_does_not_override_a_received_header(setup):
    future = timezone.now() + timedelta(days=30)
    letter = ingest_raw(mailbox=setup.mailbox, raw=letter_bytes(to=MAIN, date=future, received=T0))
    assert letter.received_at == T0
