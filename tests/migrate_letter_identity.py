"""Run by test_letter_identity_migration in a process of its own, against the
database DATABASE_URL names (empty): migrates to just before letters were
known by their content, stores letters as they were stored then, migrates to
the latest state, stores some of them again, and prints what became of every
letter as JSON."""

import hashlib
import json
import os
from datetime import UTC, datetime

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.core.management import call_command  # noqa: E402 - needs Django set up
from django.db import connection  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402

BEFORE = ("mailbox_sync", "0003_letter_source_lz4")
T0 = datetime(2025, 7, 31, 12, 0, tzinfo=UTC)


def raw(message_id: str, body: str, received: str = "") -> bytes:
    head = f"Received: from mx{received} by mx.shop.test\r\n" if received else ""
    mid = f"Message-ID: {message_id}\r\n" if message_id else ""
    return (
        f"{head}From: ivan@client.test\r\nTo: info@shop.test\r\nSubject: {body}\r\n{mid}"
        f"Date: Thu, 31 Jul 2025 12:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


# name → (mailbox, Message-ID, raw, source kept)
LETTERS = {
    "a": (1, "<a@x>", raw("<a@x>", "A", "1"), True),
    "b1": (1, "", raw("", "B", "1"), True),
    "b2": (1, "", raw("", "B", "2"), True),  # differs from b1 only in a delivery header
    "c": (1, "<c@x>", raw("<c@x>", "C"), False),  # its source erased by retention
    "d": (1, "<d@x>", raw("<d@x>", "D"), True),
    "e": (2, "<d@x>", raw("<d@x>", "E"), True),  # the same Message-ID, other content, other mailbox
    "f": (1, "<f@x>", raw("<f@x>", "F"), True),
    "g": (2, "<f@x>", raw("<f@x>", "F"), True),  # the same letter in the other mailbox
}


def old_key(message_id: str, data: bytes) -> str:
    return message_id or "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    call_command("migrate", BEFORE[0], BEFORE[1], verbosity=0)
    apps = MigrationExecutor(connection).loader.project_state([BEFORE]).apps
    project = apps.get_model("projects", "Project").objects.create(name="Shop")
    mailbox_model = apps.get_model("mailbox_sync", "Mailbox")
    boxes = {
        n: mailbox_model.objects.create(project=project, name=f"Box {n}", host="h", username=f"u{n}") for n in (1, 2)
    }
    letter_model = apps.get_model("mailbox_sync", "Letter")
    source_model = apps.get_model("mailbox_sync", "LetterSource")
    ids = {}
    for name, (box, message_id, data, kept) in LETTERS.items():
        letter = letter_model.objects.create(
            mailbox=boxes[box],
            dedupe_key=old_key(message_id, data),
            message_id=message_id,
            received_at=T0,
            subject=name,
        )
        if kept:
            source_model.objects.create(letter=letter, raw=data)
        ids[name] = letter.pk

    call_command("migrate", verbosity=0)
    from mailbox_sync.models import Letter, LetterCopy, Mailbox
    from mailbox_sync.services import store_letter

    box1 = Mailbox.objects.get(pk=boxes[1].pk)
    again = {
        "a": store_letter(mailbox=box1, raw=LETTERS["a"][2], received_at=T0),
        "b1": store_letter(mailbox=box1, raw=LETTERS["b1"][2], received_at=T0),
        "a_reused": store_letter(mailbox=box1, raw=raw("<a@x>", "Another A"), received_at=T0),
    }
    letters = {
        name: dict(
            zip(
                ["key", "reused"], Letter.objects.values_list("dedupe_key", "message_id_reused").get(pk=pk), strict=True
            )
        )
        for name, pk in ids.items()
    }
    print(
        json.dumps(
            {
                "letters": letters,
                "old_keys": {name: old_key(mid, data) for name, (_box, mid, data, _kept) in LETTERS.items()},
                "count": Letter.objects.count(),
                "again": {name: (letter.pk if letter else None) for name, letter in again.items()},
                "copies": sorted(LetterCopy.objects.values_list("letter_id", flat=True)),
                "ids": ids,
                "a_reused_flag": Letter.objects.get(pk=again["a_reused"].pk).message_id_reused,
            }
        )
    )


if __name__ == "__main__":
    main()
