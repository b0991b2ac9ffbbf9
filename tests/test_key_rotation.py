"""rotate_encryption_key re-encrypts every stored secret with the first key,
so an old key can then be removed and every secret still reads."""

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError

from integrations.models import Webhook
from integrations.webhooks import webhook_secret, webhook_set_secret
from lib import crypto
from mailbox_sync.models import Mailbox
from mailbox_sync.services import mailbox_password, mailbox_set_password
from tests.factories import make_setup

pytestmark = pytest.mark.django_db

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_secrets_encrypted_with_an_old_key_read_after_rotation_with_the_new_key_alone(settings):
    settings.ENCRYPTION_KEY = OLD
    setup = make_setup(imap_password="imap-Secret-1")
    mailbox_set_password(setup.mailbox, "imap-Secret-1")
    setup.mailbox.save()
    webhook = Webhook(project=setup.project, url="https://crm.example/hook")
    webhook_set_secret(webhook, "hook-Secret-2")
    webhook.save()
    settings.ENCRYPTION_KEY = f"{NEW},{OLD}"
    out = io.StringIO()
    call_command("rotate_encryption_key", stdout=out)
    assert "secrets re-encrypted" in out.getvalue()
    settings.ENCRYPTION_KEY = NEW  # the old key removed
    assert mailbox_password(Mailbox.objects.get(pk=setup.mailbox.pk)) == "imap-Secret-1"
    assert webhook_secret(Webhook.objects.get(pk=webhook.pk)) == "hook-Secret-2"
    stored = Mailbox.objects.get(pk=setup.mailbox.pk).password_encrypted
    assert "imap-Secret-1" not in stored


def test_a_secret_no_key_decrypts_is_reported_and_kept(settings):
    settings.ENCRYPTION_KEY = OLD
    setup = make_setup()
    before = Mailbox.objects.get(pk=setup.mailbox.pk).password_encrypted
    settings.ENCRYPTION_KEY = NEW  # the key it was encrypted with is gone
    err = io.StringIO()
    with pytest.raises(CommandError, match="could not be decrypted"):
        call_command("rotate_encryption_key", stdout=io.StringIO(), stderr=err)
    assert f"mailbox_sync.Mailbox {setup.mailbox.pk}: password_encrypted" in err.getvalue()
    assert Mailbox.objects.get(pk=setup.mailbox.pk).password_encrypted == before
    with pytest.raises(ValueError):
        crypto.decrypt(before)
