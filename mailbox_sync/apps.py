from django.apps import AppConfig


class MailboxSyncConfig(AppConfig):
    name = "mailbox_sync"
