"""The OAuth2 consent flow end to end in Chromium: the account manager adds
a mailbox with "OAuth2" in admin, is sent to the provider's consent page
(the local provider), presses "Allow", comes back to admin connected as the
address the provider names, and the mailbox's letters are read over XOAUTH2."""

import pytest
from django.test import Client
from django.utils import timezone

from mailbox_sync.models import Mailbox, OAuthGrant
from mailbox_sync.services import sync_mailbox
from tests import oauth_fixtures
from tests.factories import letter_bytes, make_setup

pytestmark = [pytest.mark.browser, pytest.mark.imap, pytest.mark.django_db(transaction=True)]

oauth_mail = oauth_fixtures.oauth_mail
provider = oauth_fixtures.provider


def test_an_account_manager_connects_a_mailbox_through_the_providers_consent_page(
    live_server, browser, oauth_mail, provider, settings, admin_user
):
    settings.PUBLIC_BASE_URL = live_server.url  # the redirect URI registered with the provider
    user = oauth_mail.account()
    provider.signing_in_as = user
    setup = make_setup(name="Browser shop")
    client = Client()
    client.force_login(admin_user)
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    page = context.new_page()

    page.goto(f"{live_server.url}/admin/mailbox_sync/mailbox/add/")
    page.select_option("#id_project", str(setup.project.pk))
    page.fill("#id_name", "Sales over OAuth2")
    page.select_option("#id_provider", "other")
    page.fill("#id_host", "127.0.0.1")
    page.fill("#id_port", str(oauth_mail.port))
    page.select_option("#id_security", "none")
    page.select_option("#id_auth", "oauth2")
    page.click("input[name=_save]")

    page.wait_for_url(f"{provider.url}/authorize?**")
    assert user in page.locator("body").text_content()
    page.click("#allow")

    page.wait_for_url(f"{live_server.url}/admin/mailbox_sync/mailbox/*/change/")
    assert f"Connected with Local Mail as {user}." in page.locator(".messagelist").text_content()
    mailbox = Mailbox.objects.get(name="Sales over OAuth2")
    assert (mailbox.auth, mailbox.username) == (Mailbox.Auth.OAUTH2, user)
    assert OAuthGrant.objects.get(pk=mailbox.pk).email == user
    assert "rt-" not in page.content()  # the refresh token is never shown
    context.close()

    oauth_mail.append(user, letter_bytes(to="info@shop.test", subject="Connected in Chromium"), when=timezone.now())
    assert sync_mailbox(mailbox.pk).stored == 1
