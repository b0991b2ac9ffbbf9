from datetime import timedelta

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from projects.models import Project

from .providers import Provider


class Mailbox(models.Model):
    """A real inbox read over IMAP, read-only."""

    class Security(models.TextChoices):
        SSL = "ssl", _("TLS (IMAPS, usually port 993)")
        STARTTLS = "starttls", _("STARTTLS (usually port 143)")
        NONE = "none", _("None (local servers only)")

    class State(models.TextChoices):
        NEW = "new", _("Not synced yet")
        OK = "ok", _("OK")
        FAILING = "failing", _("Failing")
        RECONNECT_NEEDED = "reconnect_needed", _("Reconnect needed")

    class Auth(models.TextChoices):
        PASSWORD = "password", _("Password or app password")
        OAUTH2 = "oauth2", _("OAuth2: sign in with the provider")

    class FolderMode(models.TextChoices):
        LISTED = "listed", _("The folders listed")
        ALL = "all", _("Every folder except Sent, Drafts, Trash and Spam")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="mailboxes", verbose_name=_("project"))
    name = models.CharField(_("name"), max_length=200)
    provider = models.CharField(_("provider"), max_length=16, choices=Provider.choices, default=Provider.OTHER)
    host = models.CharField(_("host"), max_length=253)
    port = models.PositiveIntegerField(_("port"), default=993)
    security = models.CharField(_("security"), max_length=16, choices=Security.choices, default=Security.SSL)
    username = models.CharField(_("username"), max_length=320)
    password_encrypted = models.TextField(_("password encrypted"), blank=True, editable=False)
    auth = models.CharField(_("sign-in"), max_length=16, choices=Auth.choices, default=Auth.PASSWORD)
    folder_mode = models.CharField(
        _("folder mode"),
        max_length=16,
        choices=FolderMode.choices,
        default=FolderMode.LISTED,
        help_text=_(
            "Servers that file user+tag mail into tag folders hide letters from INBOX: then watch every folder."
        ),
    )
    folders = models.CharField(
        _("folders"), max_length=500, default="INBOX", help_text=_("Folders to watch, comma-separated.")
    )
    watch_sent = models.BooleanField(
        _("watch sent"),
        default=False,
        help_text=_("Also read the Sent folder (headers only): the first reply to a lead gives its response time."),
    )
    active = models.BooleanField(_("active"), default=True)
    repeat_period = models.DurationField(
        _("repeat period"),
        default=timedelta(days=1),
        help_text=_("A letter from the same sender to the same address within this period joins the earlier lead."),
    )
    sync_interval_minutes = models.PositiveIntegerField(
        _("sync interval minutes"), default=10, validators=[MinValueValidator(1)]
    )
    text_limit = models.PositiveIntegerField(
        _("text limit"), default=1000, validators=[MinValueValidator(1)], help_text=_("Characters of letter text kept.")
    )
    tracked_only = models.BooleanField(
        _("tracked only"), default=False, help_text=_("Letters to untracked addresses are not leads.")
    )

    # Sync state
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.NEW, editable=False)
    next_sync_at = models.DateTimeField(_("next sync at"), null=True, blank=True, editable=False)
    last_sync_at = models.DateTimeField(_("last sync at"), null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(_("last success at"), null=True, blank=True, editable=False)
    last_error = models.TextField(_("last error"), blank=True, editable=False)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True, editable=False)
    failure_count = models.PositiveIntegerField(_("failure count"), default=0, editable=False)
    # Letters that reached the mailbox before this are never read: the first
    # sync sets it to 24 hours back, and folders found later start there too.
    sync_horizon = models.DateTimeField(_("sync horizon"), null=True, blank=True, editable=False)
    # The claim of the one sync running now: until when, by which process
    # ("host:pid"), and a token so that only that sync may renew or free it.
    claimed_until = models.DateTimeField(_("claimed until"), null=True, blank=True, editable=False)
    claimed_by = models.CharField(_("claimed by"), max_length=255, blank=True, editable=False)
    claim_token = models.CharField(_("claim token"), max_length=32, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("mailbox")
        verbose_name_plural = _("mailboxes")
        # Connected only once, across all projects: the same host and (normalised)
        # username would read the same letters into two projects.
        constraints = [
            models.UniqueConstraint(
                fields=["host", "username"],
                name="mailbox_connected_once",
                violation_error_message=_("This mailbox is already connected (possibly in another project)."),
            )
        ]
        indexes = [models.Index(fields=["active", "next_sync_at"], name="mailbox_due")]

    def __str__(self):
        return self.name

    @property
    def folder_names(self) -> list[str]:
        return self.split_folders(self.folders)

    @staticmethod
    def split_folders(folders: str) -> list[str]:
        """The names in a `folders` value (INBOX when it names none)."""
        return [f.strip() for f in folders.split(",") if f.strip()] or ["INBOX"]


class FolderState(models.Model):
    """How far a folder has been read: letters above `last_uid` are new."""

    mailbox = models.ForeignKey(
        Mailbox, on_delete=models.CASCADE, related_name="folder_states", verbose_name=_("mailbox")
    )
    name = models.CharField(_("name"), max_length=500)
    uidvalidity = models.BigIntegerField(_("uidvalidity"))
    last_uid = models.BigIntegerField(_("last uid"), default=0)
    last_synced_at = models.DateTimeField(_("last synced at"), null=True, blank=True)
    # Set while the folder is read by arrival date (its first read, or a
    # re-read after a UIDVALIDITY change): UIDs there are not in date order,
    # so until the read completes `last_uid` only says how far it got.
    window_since = models.DateTimeField(_("window since"), null=True, blank=True)

    class Meta:
        verbose_name = _("folder state")
        verbose_name_plural = _("folder states")
        constraints = [models.UniqueConstraint(fields=["mailbox", "name"], name="folderstate_unique")]

    def __str__(self):
        return f"{self.mailbox} / {self.name}"


class Letter(models.Model):
    """One stored letter, exactly once per mailbox."""

    class Origin(models.TextChoices):
        IMAP = "imap", _("IMAP")
        FILE = "file", _("File")
        DEMO = "demo", _("Demo page")

    # No index of its own: every index and constraint below starts with the
    # mailbox, and one index fewer is one write fewer per letter stored and
    # attributed.
    mailbox = models.ForeignKey(
        Mailbox, on_delete=models.CASCADE, related_name="letters", verbose_name=_("mailbox"), db_index=False
    )
    origin = models.CharField(_("origin"), max_length=8, choices=Origin.choices, default=Origin.IMAP)
    folder = models.CharField(_("folder"), max_length=500, blank=True)
    uidvalidity = models.BigIntegerField(_("uidvalidity"), null=True, blank=True)
    uid = models.BigIntegerField(_("uid"), null=True, blank=True)
    # The letter's identity (identity.content_digest: its bytes without the
    # headers servers add on delivery): never two per mailbox. Letters stored
    # before it was introduced, whose source retention has erased, keep their
    # Message-ID or the hash of their raw bytes.
    dedupe_key = models.CharField(_("dedupe key"), max_length=1000)
    message_id = models.CharField(_("message id"), max_length=998, blank=True)
    message_id_reused = models.BooleanField(
        _("Message-ID reused"),
        default=False,
        help_text=_("Another letter of the project, with other content, carries the same Message-ID."),
    )
    received_at = models.DateTimeField(_("received at"), help_text=_("Arrival in the mailbox: the attribution time"))
    date_header = models.DateTimeField(
        _("date header"), null=True, blank=True, help_text=_("The sender's Date header, shown, never trusted")
    )
    date_header_offset = models.SmallIntegerField(
        _("date header offset"), null=True, blank=True, help_text=_("The Date header's time zone, minutes east of UTC")
    )
    sender_email = models.EmailField(_("sender email"), max_length=320, blank=True)
    sender_name = models.CharField(_("sender name"), max_length=200, blank=True)
    subject = models.CharField(_("subject"), max_length=500, blank=True)
    recipients = models.JSONField(_("recipients"), default=dict, help_text=_("delivered_to, to, cc"))
    in_reply_to = models.CharField(_("in reply to"), max_length=998, blank=True)
    references = models.JSONField(_("references"), default=list, blank=True)
    text = models.TextField(_("text"), blank=True)
    attachments = models.JSONField(_("attachments"), default=list, blank=True)
    size = models.PositiveIntegerField(_("size"), default=0)
    truncated = models.BooleanField(
        _("truncated"), default=False, help_text=_("Over the size limit: headers and the start of the body were kept")
    )
    headers = models.JSONField(_("headers"), default=dict, blank=True)
    malformed = models.BooleanField(_("malformed"), default=False)
    parse_error = models.TextField(_("parse error"), blank=True)
    not_lead_reason = models.CharField(_("not lead reason"), max_length=200, blank=True)
    attributed_at = models.DateTimeField(_("attributed at"), null=True, blank=True)
    attribution_error = models.TextField(_("attribution error"), blank=True)
    # The lead attribution made of it (attribution listens to "letters stored").
    lead = models.ForeignKey(
        "attribution.Lead",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="letters",
        verbose_name=_("lead"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("letter")
        verbose_name_plural = _("letters")
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["mailbox", "folder", "uidvalidity", "uid"],
                condition=Q(uid__isnull=False),
                name="letter_unique_uid",
            ),
            models.UniqueConstraint(fields=["mailbox", "dedupe_key"], name="letter_unique_dedupe_key"),
        ]
        indexes = [
            models.Index(fields=["mailbox", "sender_email", "received_at"], name="letter_sender_received"),
            models.Index(fields=["message_id"], name="letter_message_id"),
            models.Index(fields=["mailbox", "id"], condition=Q(attributed_at__isnull=True), name="letter_unattributed"),
        ]

    def __str__(self):
        return f"{self.sender_email}: {self.subject}"


class LetterCopy(models.Model):
    """Where else a stored letter was seen: the same letter (same Message-ID
    and content) under another UID, in another folder, or in a file ingested
    again. Stored and attributed once; each copy's UID is read only once."""

    letter = models.ForeignKey(Letter, on_delete=models.CASCADE, related_name="copies", verbose_name=_("letter"))
    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="+", verbose_name=_("mailbox"))
    origin = models.CharField(_("origin"), max_length=8, choices=Letter.Origin.choices, default=Letter.Origin.IMAP)
    folder = models.CharField(_("folder"), max_length=500, blank=True)
    uidvalidity = models.BigIntegerField(_("uidvalidity"), null=True, blank=True)
    uid = models.BigIntegerField(_("uid"), null=True, blank=True)
    received_at = models.DateTimeField(_("received at"), help_text=_("Arrival of this copy"))
    seen_at = models.DateTimeField(_("seen at"), auto_now_add=True)

    class Meta:
        verbose_name = _("letter copy")
        verbose_name_plural = _("letter copies")
        ordering = ["received_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["mailbox", "folder", "uidvalidity", "uid"],
                condition=Q(uid__isnull=False),
                name="lettercopy_unique_uid",
            ),
        ]
        indexes = [models.Index(fields=["letter", "received_at"], name="lettercopy_letter")]

    def __str__(self):
        where = f"{self.folder} UID {self.uid}" if self.uid is not None else self.get_origin_display()
        return f"Copy of letter {self.letter_id}: {where}"


class LetterSource(models.Model):
    """The letter's bytes as the server gave them (for a truncated letter: its
    headers and the start of its body). Kept apart so that lists and
    attribution, which read letters by the thousand, never load megabytes."""

    letter = models.OneToOneField(
        Letter, primary_key=True, on_delete=models.CASCADE, related_name="source", verbose_name=_("letter")
    )
    raw = models.BinaryField(_("raw"))

    class Meta:
        verbose_name = _("letter source")
        verbose_name_plural = _("letter sources")

    def __str__(self):
        return f"Source of letter {self.letter_id}"


class Reply(models.Model):
    """A letter in the Sent folder (headers only). The first one that answers
    a lead gives the lead's response time."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="replies", verbose_name=_("mailbox"))
    folder = models.CharField(_("folder"), max_length=500)
    uidvalidity = models.BigIntegerField(_("uidvalidity"))
    uid = models.BigIntegerField(_("uid"))
    dedupe_key = models.CharField(_("dedupe key"), max_length=1000)
    message_id = models.CharField(_("message id"), max_length=998, blank=True)
    sent_at = models.DateTimeField(_("sent at"), help_text=_("When it was filed in Sent (IMAP INTERNALDATE)"))
    recipients = models.JSONField(_("recipients"), default=list, blank=True)
    in_reply_to = models.CharField(_("in reply to"), max_length=998, blank=True)
    references = models.JSONField(_("references"), default=list, blank=True)
    lead = models.ForeignKey(
        "attribution.Lead",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="replies",
        verbose_name=_("lead"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("reply")
        verbose_name_plural = _("replies")
        ordering = ["-sent_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["mailbox", "folder", "uidvalidity", "uid"], name="reply_unique_uid"),
            models.UniqueConstraint(fields=["mailbox", "dedupe_key"], name="reply_unique_dedupe_key"),
        ]
        indexes = [
            models.Index(fields=["lead", "sent_at"], name="reply_lead_sent"),
            models.Index(fields=["mailbox", "sent_at"], condition=Q(lead__isnull=True), name="reply_unmatched"),
        ]

    def __str__(self):
        return f"Reply {self.message_id or self.pk}"


class Listening(models.Model):
    """How the listener (IMAP IDLE) hears a mailbox, and which listener
    process holds it: a lease, renewed while that process lives and taken
    over by another once it has lapsed. One row per mailbox, so no mailbox
    is ever held by two listeners."""

    class State(models.TextChoices):
        LISTENING = "listening", _("Listening")
        POLLING = "polling", _("Polling (the server has no IDLE)")
        RECONNECTING = "reconnecting", _("Reconnecting")
        RECONNECT_NEEDED = "reconnect_needed", _("Reconnect needed")

    mailbox = models.OneToOneField(
        Mailbox, primary_key=True, on_delete=models.CASCADE, related_name="listening", verbose_name=_("mailbox")
    )
    listener = models.CharField(_("listener"), max_length=255, blank=True)
    held_until = models.DateTimeField(_("held until"), null=True, blank=True)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.RECONNECTING)
    state_since = models.DateTimeField(_("since"), null=True, blank=True)
    last_letter_at = models.DateTimeField(_("last letter seen"), null=True, blank=True)
    last_error = models.TextField(_("why"), blank=True)

    class Meta:
        verbose_name = _("listening")
        verbose_name_plural = _("listening")
        indexes = [models.Index(fields=["listener", "held_until"], name="listening_holder")]

    def __str__(self):
        return f"{self.mailbox_id}: {self.state}"


class ListenerProcess(models.Model):
    """A running listener (`listen_mailboxes`): each takes its share of the
    active mailboxes, so several processes or hosts spread them."""

    name = models.CharField(_("name"), max_length=255, unique=True)
    seen_at = models.DateTimeField(_("seen at"))

    class Meta:
        verbose_name = _("listener process")
        verbose_name_plural = _("listener processes")

    def __str__(self):
        return self.name


class OAuthGrant(models.Model):
    """A mailbox connected with OAuth2: the provider's grant. The refresh
    token is kept only encrypted and never shown, logged or returned; the
    access token is cached encrypted until shortly before it expires. One
    refresh at a time: a worker claims the grant (`refreshing_until`) with a
    conditional update, the others wait for its token."""

    mailbox = models.OneToOneField(
        Mailbox, primary_key=True, on_delete=models.CASCADE, related_name="oauth_grant", verbose_name=_("mailbox")
    )
    provider = models.CharField(_("provider"), max_length=16)
    email = models.EmailField(_("signed in as"), max_length=320)
    refresh_token_encrypted = models.TextField(_("refresh token encrypted"), editable=False)
    access_token_encrypted = models.TextField(_("access token encrypted"), blank=True, editable=False)
    access_expires_at = models.DateTimeField(_("access expires at"), null=True, blank=True, editable=False)
    refreshing_until = models.DateTimeField(_("refreshing until"), null=True, blank=True, editable=False)
    refreshing_claim = models.CharField(_("refreshing claim"), max_length=32, blank=True, editable=False)
    # The provider's own words when it refused the grant (revoked or expired).
    refused = models.TextField(_("refused by the provider"), blank=True, editable=False)
    refused_at = models.DateTimeField(_("refused at"), null=True, blank=True, editable=False)
    connected_at = models.DateTimeField(_("connected"), auto_now_add=True)

    class Meta:
        verbose_name_plural = _("OAuth2 grants")
        verbose_name = _("OAuth2 grant")

    def __str__(self):
        return f"{self.provider}: {self.email}"
