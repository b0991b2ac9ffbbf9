"""Handing one copy of a letter to a project's upstream SMTP server.

The upstream's host is typed by a customer, so it passes the same guard as a
webhook URL (`integrations.http`): the name is resolved once, every address
is checked (no private, loopback, link-local or reserved address unless the
installation allows private upstreams), and the connection goes to a checked
address (pinned) while EHLO, SNI and the certificate check still use the
name. The letter's bytes are sent as they are (smtplib only dot-stuffs them).
"""

import smtplib
import socket
import ssl
from dataclasses import dataclass, field

from integrations import http
from lib import crypto

from . import conf
from .models import Upstream

# Replies that mean "try again later" although they are not 4xx.
TEMPORARY_AUTH_CODES = {454, 530, 534, 535, 538}


@dataclass
class Result:
    """What the upstream did with each recipient of one attempt."""

    accepted: list[str] = field(default_factory=list)
    temporary: list[tuple[str, int, str]] = field(default_factory=list)  # (recipient, code, reply)
    permanent: list[tuple[str, int, str]] = field(default_factory=list)

    @property
    def error(self) -> str:
        failures = self.temporary or self.permanent
        if not failures:
            return ""
        _rcpt, code, reply = failures[0]
        return f"{code} {reply}".strip() if code else reply


def _all(recipients, code: int, reply: str, *, permanent: bool) -> Result:
    failures = [(r, code, reply[:300]) for r in recipients]
    return Result(permanent=failures) if permanent else Result(temporary=failures)


def _reply_text(reply) -> str:
    text = reply.decode("utf-8", errors="replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:300]


class _Pinned:
    """Connects to the checked address; the host name stays for EHLO, SNI and the certificate."""

    pinned_address = ""

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((self.pinned_address, port), timeout, self.source_address)
        if isinstance(self, smtplib.SMTP_SSL):
            sock = self.context.wrap_socket(sock, server_hostname=self._host)
        return sock


class _PinnedSMTP(_Pinned, smtplib.SMTP):
    pass


class _PinnedSMTPS(_Pinned, smtplib.SMTP_SSL):
    pass


def checked_addresses(host: str, port: int) -> list[str]:
    """The addresses the host resolves to, all of them allowed; raises http.RequestFailed otherwise."""
    addresses = http.resolve(host, port)
    allow_private = conf.allow_private_upstreams()
    for _family, ip in addresses:
        reason = http.refusal(ip, allow_private=allow_private)
        if reason:
            raise http.RequestFailed(f"{host} resolves to {reason}", refused=True)
    return [ip for _family, ip in addresses]


def upstream_password(upstream: Upstream) -> str:
    return crypto.decrypt(upstream.password_encrypted) if upstream.password_encrypted else ""


def upstream_set_password(upstream: Upstream, password: str) -> None:
    """The password is kept only encrypted (Fernet, ENCRYPTION_KEY)."""
    upstream.password_encrypted = crypto.encrypt(password) if password else ""


def _connect(upstream: Upstream, address: str, timeout: float) -> smtplib.SMTP:
    local = conf.hostname()
    if upstream.security == Upstream.Security.TLS:
        conn = _PinnedSMTPS(local_hostname=local, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = _PinnedSMTP(local_hostname=local, timeout=timeout)
    conn.pinned_address = address
    conn.connect(upstream.host, upstream.port)
    conn.ehlo_or_helo_if_needed()
    if upstream.security == Upstream.Security.STARTTLS:
        if not conn.has_extn("starttls"):
            raise smtplib.SMTPNotSupportedError(f"{upstream.host} does not offer STARTTLS")
        conn.starttls(context=ssl.create_default_context())
        conn.ehlo()
    if upstream.username:
        conn.login(upstream.username, upstream_password(upstream))
    return conn


def send(upstream: Upstream, *, mail_from: str, recipients: list[str], raw: bytes) -> Result:
    """One attempt: every recipient ends up accepted, temporarily refused or
    refused for good. Nothing here raises: an unreachable or misconfigured
    upstream (including a login it refuses) is a temporary failure for all."""
    timeout = conf.upstream_timeout()
    try:
        addresses = checked_addresses(upstream.host, upstream.port)
    except http.RequestFailed as exc:
        return _all(recipients, 0, str(exc), permanent=False)
    conn, last_error = None, "no address"
    for address in addresses:
        try:
            conn = _connect(upstream, address, timeout)
            break
        except smtplib.SMTPResponseException as exc:
            last_error = f"{exc.smtp_code} {_reply_text(exc.smtp_error)}"
        except ssl.SSLError as exc:
            last_error = f"TLS with {upstream.host} failed: {exc.reason or exc}"
        except ConnectionRefusedError:
            last_error = f"{upstream.host} refused the connection"
        except TimeoutError:
            last_error = f"{upstream.host} did not answer in {timeout:g} s"
        except (OSError, smtplib.SMTPException) as exc:
            last_error = f"{upstream.host}: {type(exc).__name__} {exc}"
    if conn is None:
        return _all(recipients, 0, last_error, permanent=False)
    try:
        return _transaction(conn, mail_from, recipients, raw)
    except smtplib.SMTPResponseException as exc:
        return _failed(recipients, exc.smtp_code, _reply_text(exc.smtp_error))
    except (OSError, smtplib.SMTPException) as exc:
        return _all(recipients, 0, f"{upstream.host}: {type(exc).__name__} {exc}", permanent=False)
    finally:
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            conn.close()


def _failed(recipients, code: int, reply: str) -> Result:
    return _all(recipients, code, reply, permanent=code >= 500 and code not in TEMPORARY_AUTH_CODES)


def _transaction(conn: smtplib.SMTP, mail_from: str, recipients: list[str], raw: bytes) -> Result:
    options = ["BODY=8BITMIME"] if conn.has_extn("8bitmime") and not raw.isascii() else []
    code, reply = conn.mail(mail_from, options)
    if code != 250:
        conn.rset()
        return _failed(recipients, code, _reply_text(reply))
    result = Result()
    for recipient in recipients:
        code, reply = conn.rcpt(recipient)
        if code in (250, 251):
            result.accepted.append(recipient)
        elif code >= 500:
            result.permanent.append((recipient, code, _reply_text(reply)))
        else:
            result.temporary.append((recipient, code, _reply_text(reply)))
    if not result.accepted:
        conn.rset()
        return result
    code, reply = conn.data(raw)
    if code != 250:
        failed = _failed(result.accepted, code, _reply_text(reply))
        result.temporary += failed.temporary
        result.permanent += failed.permanent
        result.accepted = []
    return result
