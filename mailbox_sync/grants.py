"""A mailbox's OAuth2 grant: connecting it after consent, and a live
access token for every connection.

- Refreshed before it expires (OAUTH_REFRESH_MARGIN_SECONDS ahead), or at
  once when the server refused it (`forget_access_token`).
- One refresh at a time, whatever the number of workers and listeners: the
  one that claims the grant (a conditional update of `refreshing_until`)
  asks the provider; the others wait for the token it stores. A claim left
  by a worker that died lapses after REFRESH_CLAIM.
- A grant the provider refuses (`invalid_grant`: revoked, expired) puts the
  mailbox into "reconnect needed" with the provider's words, announces it
  (`events.reconnect_needed`, for the project's managers), and stops there:
  no retries until the account manager connects the mailbox again
  (`events.connected`). A
  token endpoint that is down or answers garbage is a passing failure.
"""

import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from lib import crypto

from . import events, oauth
from .credentials import CredentialsError, ReconnectNeeded
from .imap import Failure
from .models import Mailbox, OAuthGrant

REFRESH_CLAIM = timedelta(seconds=30)
WAIT_STEP_SECONDS = 0.1


def connect(mailbox: Mailbox, client: oauth.Client, tokens: oauth.Tokens, address: str) -> OAuthGrant:
    """Keep the grant the consent flow brought (the refresh token only
    encrypted) and make the mailbox an OAuth2 mailbox of that address, to be
    synced from scratch state-wise (its letters stay)."""
    if not tokens.refresh_token:
        raise oauth.OAuthError(f"{client.name} gave no refresh token: the mailbox could not stay connected")
    now = timezone.now()
    with transaction.atomic():
        grant, _created = OAuthGrant.objects.update_or_create(
            mailbox=mailbox,
            defaults={
                "provider": client.key,
                "email": address,
                "refresh_token_encrypted": crypto.encrypt(tokens.refresh_token),
                "access_token_encrypted": crypto.encrypt(tokens.access_token),
                "access_expires_at": now + timedelta(seconds=tokens.expires_in),
                "refreshing_until": None,
                "refreshing_claim": "",
                "refused": "",
                "refused_at": None,
            },
        )
        Mailbox.objects.filter(pk=mailbox.pk).update(
            auth=Mailbox.Auth.OAUTH2,
            username=address,
            password_encrypted="",
            state=Mailbox.State.NEW,
            last_error="",
            failure_count=0,
            next_sync_at=None,
        )
        events.connected(mailbox.pk)
    return grant


def access_token(mailbox_id: int) -> tuple[str, str]:
    """The username to log in as and a live access token."""
    margin = timedelta(seconds=settings.OAUTH_REFRESH_MARGIN_SECONDS)
    deadline = time.monotonic() + REFRESH_CLAIM.total_seconds() + 5
    while True:
        grant = OAuthGrant.objects.select_related("mailbox").filter(pk=mailbox_id).first()
        if grant is None:
            raise CredentialsError("The mailbox is not connected with OAuth2: connect it in admin")
        if grant.refused:
            raise ReconnectNeeded(grant.refused)
        now = timezone.now()
        if grant.access_token_encrypted and grant.access_expires_at and grant.access_expires_at > now + margin:
            return grant.mailbox.username or grant.email, _decrypt(grant.access_token_encrypted)
        claim = uuid.uuid4().hex
        free = Q(refreshing_until__isnull=True) | Q(refreshing_until__lt=now)
        claimed = OAuthGrant.objects.filter(Q(pk=mailbox_id) & free).update(
            refreshing_until=now + REFRESH_CLAIM, refreshing_claim=claim
        )
        if claimed == 1:
            return grant.mailbox.username or grant.email, _refresh(grant, claim)
        if time.monotonic() > deadline:
            raise CredentialsError("Another worker's token refresh did not finish in time", Failure.TIMEOUT)
        time.sleep(WAIT_STEP_SECONDS)


def forget_access_token(mailbox_id: int) -> None:
    """The server refused the cached access token before its expiry: the
    next connection refreshes it."""
    OAuthGrant.objects.filter(pk=mailbox_id).update(access_token_encrypted="", access_expires_at=None)


def _refresh(grant: OAuthGrant, claim: str) -> str:
    mine = OAuthGrant.objects.filter(pk=grant.pk, refreshing_claim=claim)
    client = oauth.client_for(grant.provider)
    if client is None:
        mine.update(refreshing_until=None, refreshing_claim="")
        raise CredentialsError(
            f"No OAuth2 client is configured for {grant.provider}: "
            "see README, 'Mailboxes: leads in seconds (IMAP IDLE) and OAuth2'"
        )
    try:
        tokens = oauth.refresh(client, _decrypt(grant.refresh_token_encrypted))
    except oauth.OAuthError as error:
        if error.refused:
            _refused(grant, str(error))
            raise ReconnectNeeded(str(error)) from None
        mine.update(refreshing_until=None, refreshing_claim="")
        raise CredentialsError(str(error), Failure.UNREACHABLE) from None
    except BaseException:
        mine.update(refreshing_until=None, refreshing_claim="")
        raise
    fields = {
        "access_token_encrypted": crypto.encrypt(tokens.access_token),
        "access_expires_at": timezone.now() + timedelta(seconds=tokens.expires_in),
        "refreshing_until": None,
        "refreshing_claim": "",
    }
    if tokens.refresh_token:  # the provider rotates refresh tokens
        fields["refresh_token_encrypted"] = crypto.encrypt(tokens.refresh_token)
    mine.update(**fields)
    return tokens.access_token


def _refused(grant: OAuthGrant, reason: str) -> None:
    now = timezone.now()
    with transaction.atomic():
        OAuthGrant.objects.filter(pk=grant.pk).update(
            refused=reason,
            refused_at=now,
            access_token_encrypted="",
            access_expires_at=None,
            refreshing_until=None,
            refreshing_claim="",
        )
        Mailbox.objects.filter(pk=grant.pk).update(
            state=Mailbox.State.RECONNECT_NEEDED, last_error=f"Reconnect needed: {reason}"[:2000], last_error_at=now
        )
        events.reconnect_needed(grant.pk, reason)


def _decrypt(token: str) -> str:
    try:
        return crypto.decrypt(token)
    except ValueError as error:
        raise CredentialsError(str(error)) from None


class AddressMismatch(oauth.OAuthError):
    """The provider signed in to another mailbox than the one typed."""


def finish_consent(mailbox: Mailbox, client: oauth.Client, code: str, verifier: str, redirect_uri: str) -> str:
    """The callback's work: exchange the code (with the PKCE verifier),
    learn the address from the provider, check it against the one typed,
    keep the grant. Returns the address; nothing is kept on an error."""
    tokens = oauth.exchange_code(client, code, verifier, redirect_uri)
    address = oauth.address_of(client, tokens)
    typed = (mailbox.username or "").strip().lower()
    if typed and typed != address:
        raise AddressMismatch(
            f"{client.name} signed in to {address}, not to {typed}: sign in with {typed}, or clear the username"
        )
    connect(mailbox, client, tokens, address)
    return address
