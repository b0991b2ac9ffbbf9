"""A person's data among the stored letters: the letters they sent, the
letters of others that name them (To, Cc, Delivered-To, a kept header such as
Reply-To), and the replies read from Sent that went to them.

This module is the one place that erases a letter's personal fields: the
time-based retention (attribution.retention) and a person's erasure both call
`erase_letters` / `erase_replies`. A letter of someone else that only names the
person keeps its content and loses only their address (`redact_letters`).

Addresses are matched as stored: lower case (see parsing), so callers pass a
normalised address (lib.privacy.normalize_email).
"""

from django.db.models import Q

from lib.privacy import mentions, readable_bytes, redact, row

from .models import Letter, LetterSource, Reply

# The fields of a letter that say who wrote, to whom, and what.
PERSONAL_FIELDS = ("text", "subject", "sender_name", "sender_email", "recipients", "headers", "attachments")


def letters_from(project_id: int, email: str):
    """The letters the person sent (their address as the letter's sender: From, else Sender, else Reply-To)."""
    return Letter.objects.filter(mailbox__project_id=project_id, sender_email=email)


def letters_naming(project_id: int, email: str) -> list[int]:
    """Ids of the letters of others that name the person among their
    recipients or kept headers."""
    rough = (
        Letter.objects.filter(mailbox__project_id=project_id)
        .exclude(sender_email=email)
        .filter(Q(recipients__icontains=email) | Q(headers__icontains=email))
        .values_list("pk", "recipients", "headers")
    )
    return [pk for pk, recipients, headers in rough if mentions([recipients, headers], email)]


def replies_to(project_id: int, email: str) -> list[int]:
    """Ids of the replies read from Sent with the person among their recipients."""
    rough = Reply.objects.filter(mailbox__project_id=project_id, recipients__icontains=email).values_list(
        "pk", "recipients"
    )
    return [pk for pk, recipients in rough if mentions(recipients, email)]


def _letters(queryset, role: str) -> list[dict]:
    letters = list(queryset.order_by("received_at", "pk"))
    sources = dict(
        LetterSource.objects.filter(letter_id__in=[letter.pk for letter in letters]).values_list("letter_id", "raw")
    )
    return [
        {
            "role": role,
            **row(letter),
            "source": readable_bytes(sources[letter.pk]) if letter.pk in sources else None,
        }
        for letter in letters
    ]


def export_person(project_id: int, email: str) -> dict:
    """Every letter the person sent or is named in, with text and raw source, and the replies sent to them."""
    return {
        "letters": _letters(letters_from(project_id, email), "sender")
        + _letters(Letter.objects.filter(pk__in=letters_naming(project_id, email)), "recipient"),
        "replies": [row(reply) for reply in Reply.objects.filter(pk__in=replies_to(project_id, email))],
    }


def erase_letters(ids: list[int]) -> None:
    """Erase what identifies the person who wrote these letters: text,
    subject, sender, recipients, kept headers, attachment names and the raw
    source. Message-IDs and times stay (threads and counts need them)."""
    Letter.objects.filter(pk__in=ids).update(
        text="", subject="", sender_name="", sender_email="", recipients={}, headers={}, attachments=[]
    )
    LetterSource.objects.filter(letter_id__in=ids).delete()


def erase_replies(ids: list[int]) -> None:
    """Erase the recipients of these replies (the customer's address)."""
    Reply.objects.filter(pk__in=ids).update(recipients=[])


def redact_letters(ids: list[int], email: str) -> None:
    """Replace the address in these letters' recipients, kept headers and raw
    source; their other content (someone else's) stays."""
    for letter in Letter.objects.filter(pk__in=ids).only("pk", "recipients", "headers"):
        Letter.objects.filter(pk=letter.pk).update(
            recipients=redact(letter.recipients, email), headers=redact(letter.headers, email)
        )
    for source in LetterSource.objects.filter(letter_id__in=ids):
        if mentions(source.raw, email):
            LetterSource.objects.filter(pk=source.pk).update(raw=redact(source.raw, email))


def redact_replies(ids: list[int], email: str) -> None:
    """Replace the address among these replies' recipients (the others stay)."""
    for reply in Reply.objects.filter(pk__in=ids).only("pk", "recipients"):
        Reply.objects.filter(pk=reply.pk).update(recipients=redact(reply.recipients, email))


def erase_person(project_id: int, email: str) -> dict:
    """The person's address out of the letters of others and the replies to
    them. The letters they sent are erased by attribution (which keeps their
    keyed digest first, see attribution.privacy), through `erase_letters`."""
    letters = letters_naming(project_id, email)
    replies = replies_to(project_id, email)
    redact_letters(letters, email)
    redact_replies(replies, email)
    return {"letters_naming": len(letters), "replies": len(replies)}
