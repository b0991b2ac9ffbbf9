"""The SMTP relay's server (aiosmtpd): who may log in, what it accepts, and
the reply after DATA. The event loop only speaks SMTP; password checks and
everything that touches the database or the upstream run in worker threads
(`_off_loop`), so one slow upstream or login never holds other clients.

Never an open relay: MAIL is refused until the client has logged in with a
relay credential, AUTH is offered only over TLS (or in the clear from
loopback when the installation allows it), and a letter only ever goes to
the credential's project's upstream. A client that drops before the end of
DATA, or sends garbage, reaches no handler: nothing is stored or sent.
"""

import asyncio
import logging
import ssl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import close_old_connections

from . import conf, credentials, queue
from .models import Credential

log = logging.getLogger(__name__)

TRY_LATER = "451 4.3.0 The relay cannot take this now; try again later"


async def _off_loop(fn, *args):
    def run():
        close_old_connections()
        try:
            return fn(*args)
        finally:
            close_old_connections()

    return await asyncio.to_thread(run)


def _one_line(reply: str) -> str:
    return " ".join(reply.split()).encode("ascii", errors="replace").decode()[:510]


def _valid(address: str) -> bool:
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


class _PendingCheck:
    """Returned by `_authenticate` so the password is checked off the loop."""

    def __init__(self, auth_data):
        self.auth_data = auth_data


def _login(peer_ip: str, tls: bool, auth_data) -> AuthResult:
    if not credentials.plain_auth_allowed(peer_ip, tls=tls):
        return AuthResult(
            success=False, handled=False, message="538 5.7.11 Encryption required for requested authentication"
        )
    if credentials.login_blocked(peer_ip):
        return AuthResult(success=False, handled=False, message="454 4.7.0 Too many failed logins; try again later")
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    login = auth_data.login.decode("utf-8", errors="replace")
    password = auth_data.password.decode("utf-8", errors="replace")
    credential = credentials.authenticate(login, password, ip=peer_ip)
    if credential is None:
        return AuthResult(success=False, handled=False)
    return AuthResult(success=True, auth_data=credential.pk)


class RelaySMTP(SMTP):
    """aiosmtpd's SMTP with PLAIN and LOGIN checked against relay credentials in a worker thread."""

    def _authenticate(self, mechanism, auth_data):
        return _PendingCheck(auth_data)

    async def auth_PLAIN(self, _, args):  # noqa: N802 - aiosmtpd's mechanism name
        return await self._checked(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _, args):  # noqa: N802 - aiosmtpd's mechanism name
        return await self._checked(await super().auth_LOGIN(_, args))

    async def _checked(self, result):
        if not isinstance(result, _PendingCheck):
            return result
        try:
            return await _off_loop(_login, self.session.peer[0], self.session.ssl is not None, result.auth_data)
        except Exception:  # noqa: BLE001 - the database is away: say so, never drop the client
            log.exception("checking a relay login failed")
            return AuthResult(success=False, handled=False, message="454 4.7.0 Temporary authentication failure")


def _credential(pk) -> Credential | None:
    return Credential.objects.filter(pk=pk, revoked_at__isnull=True).first()


def _sender_reply(credential_pk, address: str) -> str:
    credential = _credential(credential_pk)
    if credential is None:
        return "530 5.7.0 This credential was revoked"
    if not credentials.sender_allowed(credential, address):
        return "550 5.7.1 This credential may not send as this sender"
    if queue.active_upstream(credential.project_id) is None:
        return "451 4.3.5 No upstream SMTP server is configured for this project"
    return ""


def _take_recipient(credential_pk) -> bool:
    credential = _credential(credential_pk)
    return credential is not None and credentials.take_recipient(credential)


def _receive(credential_pk, mail_from: str, recipients: list[str], raw: bytes, peer_ip: str) -> str:
    credential = _credential(credential_pk)
    if credential is None:
        return "530 5.7.0 This credential was revoked"
    return queue.letter_receive(
        credential=credential, mail_from=mail_from, recipients=recipients, raw=raw, client_ip=peer_ip
    )


class RelayHandler:
    """aiosmtpd hooks; reached only by a logged-in client (auth_required)."""

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        if not address:
            return "550 5.7.1 A sender address is required"
        if not _valid(address):
            return "553 5.1.7 The sender address is not valid"
        try:
            refused = await _off_loop(_sender_reply, session.auth_data, address)
        except Exception:  # noqa: BLE001
            log.exception("checking a relay sender failed")
            return TRY_LATER
        if refused:
            return refused
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if not _valid(address):
            return "553 5.1.3 The recipient address is not valid"
        if address in envelope.rcpt_tos:
            return "250 2.1.5 OK"
        if len(envelope.rcpt_tos) >= conf.max_recipients():
            return "452 4.5.3 Too many recipients"
        try:
            allowed = await _off_loop(_take_recipient, session.auth_data)
        except Exception:  # noqa: BLE001
            log.exception("counting a relay recipient failed")
            return TRY_LATER
        if not allowed:
            return "450 4.7.1 This credential's hourly recipient limit is reached; try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        raw = envelope.original_content or b""
        try:
            reply = await _off_loop(
                _receive, session.auth_data, envelope.mail_from, list(envelope.rcpt_tos), raw, session.peer[0]
            )
        except Exception:  # noqa: BLE001 - nothing was committed: the client keeps the letter and retries
            log.exception("storing a relayed letter failed")
            return TRY_LATER
        return _one_line(reply)


class RelayController(Controller):
    """aiosmtpd's threaded controller serving RelaySMTP."""

    def factory(self):
        return RelaySMTP(self.handler, **self.SMTP_kwargs)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def make_controller(host: str | None = None, port: int | None = None) -> RelayController:
    """The relay with the installation's settings (the command and the tests use this)."""
    cert, key = conf.tls_files()
    return RelayController(
        RelayHandler(),
        hostname=host or conf.listen_host(),
        port=port or conf.listen_port(),
        server_hostname=conf.hostname(),
        ident="emailtrack relay",
        tls_context=tls_context(cert, key) if cert else None,
        require_starttls=False,
        auth_required=True,
        auth_require_tls=not conf.allow_plain_auth_on_loopback(),
        data_size_limit=conf.max_message_bytes(),
        decode_data=False,
        enable_SMTPUTF8=False,
    )
