"""OAuth2 for IMAP (XOAUTH2): the providers, the consent flow's two ends
(the authorization URL with PKCE and `state`, the code exchange), and the
token endpoint's calls.

Presets for Google (Gmail, Workspace), Microsoft (Microsoft 365,
Outlook.com) and Yandex (Yandex 360), and one generic provider for others
(authorization and token URLs and scopes); each provider's client id and
secret are the installation's (settings, from the environment). The
endpoints are the installation's configuration, never a tenant's input.
The mailbox's address comes from the token answer (OpenID Connect
`id_token`, received directly from the token endpoint over TLS, or the
provider's user-info URL). Error messages carry the provider's own words,
never a token.
"""

import base64
import hashlib
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from django.conf import settings

from .providers import Provider

MAX_ANSWER_BYTES = 256 * 1024
TIMEOUT_SECONDS = 15


class OAuthError(Exception):
    """The provider answered with an error, or not at all. `refused`: the
    grant is no longer valid (revoked, expired): only signing in again helps."""

    def __init__(self, message: str, *, refused: bool = False):
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True)
class Client:
    key: str  # the Provider value it serves
    name: str
    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    client_id: str
    client_secret: str
    userinfo_url: str = ""
    extra: dict = field(default_factory=dict)  # more authorization parameters


def client_for(provider: str) -> Client | None:
    """The installation's OAuth2 client for a mailbox provider, or None when
    it has none configured. "Other" uses the generic provider."""
    if provider == Provider.GMAIL and settings.OAUTH_GOOGLE_CLIENT_ID:
        return Client(
            Provider.GMAIL,
            "Google",
            "https://accounts.google.com/o/oauth2/v2/auth",
            "https://oauth2.googleapis.com/token",
            ("https://mail.google.com/", "openid", "email"),
            settings.OAUTH_GOOGLE_CLIENT_ID,
            settings.OAUTH_GOOGLE_CLIENT_SECRET,
            # A refresh token every time, also for an account that consented before.
            extra={"access_type": "offline", "prompt": "consent"},
        )
    if provider == Provider.OUTLOOK and settings.OAUTH_MICROSOFT_CLIENT_ID:
        tenant = settings.OAUTH_MICROSOFT_TENANT or "common"
        base = f"https://login.microsoftonline.com/{urllib.parse.quote(tenant)}/oauth2/v2.0"
        return Client(
            Provider.OUTLOOK,
            "Microsoft",
            f"{base}/authorize",
            f"{base}/token",
            ("https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access", "openid", "email"),
            settings.OAUTH_MICROSOFT_CLIENT_ID,
            settings.OAUTH_MICROSOFT_CLIENT_SECRET,
        )
    if provider == Provider.YANDEX and settings.OAUTH_YANDEX_CLIENT_ID:
        return Client(
            Provider.YANDEX,
            "Yandex",
            "https://oauth.yandex.ru/authorize",
            "https://oauth.yandex.ru/token",
            ("mail:imap_ro", "login:email"),
            settings.OAUTH_YANDEX_CLIENT_ID,
            settings.OAUTH_YANDEX_CLIENT_SECRET,
            userinfo_url="https://login.yandex.ru/info?format=json",
        )
    if provider == Provider.OTHER and settings.OAUTH_GENERIC_CLIENT_ID and settings.OAUTH_GENERIC_TOKEN_URL:
        return Client(
            Provider.OTHER,
            settings.OAUTH_GENERIC_NAME or "OAuth2",
            settings.OAUTH_GENERIC_AUTHORIZE_URL,
            settings.OAUTH_GENERIC_TOKEN_URL,
            tuple(settings.OAUTH_GENERIC_SCOPES.split()),
            settings.OAUTH_GENERIC_CLIENT_ID,
            settings.OAUTH_GENERIC_CLIENT_SECRET,
            userinfo_url=settings.OAUTH_GENERIC_USERINFO_URL,
        )
    return None


# --- The consent flow ---------------------------------------------------------------


@dataclass(frozen=True)
class Consent:
    url: str  # where the account manager's browser goes
    state: str
    verifier: str  # PKCE: kept on our side, sent with the code


def consent(client: Client, redirect_uri: str, login_hint: str = "") -> Consent:
    """The authorization request: code flow with PKCE (S256) and a `state`
    that the callback must bring back."""
    state = secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(client.scopes),
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **client.extra,
    }
    if login_hint:
        params["login_hint"] = login_hint
    separator = "&" if "?" in client.authorize_url else "?"
    return Consent(f"{client.authorize_url}{separator}{urllib.parse.urlencode(params)}", state, verifier)


@dataclass(frozen=True)
class Tokens:
    access_token: str
    expires_in: int
    refresh_token: str = ""
    id_token: str = ""


def exchange_code(client: Client, code: str, verifier: str, redirect_uri: str) -> Tokens:
    return _token_call(
        client,
        {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": redirect_uri},
    )


def refresh(client: Client, refresh_token: str) -> Tokens:
    """A new access token. OAuthError(refused=True) when the provider says
    the grant is gone (`invalid_grant`)."""
    return _token_call(client, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def address_of(client: Client, tokens: Tokens) -> str:
    """The mailbox's address, as the provider says: the id_token's `email`
    (or Microsoft's `preferred_username`), else the user-info URL's."""
    if tokens.id_token:
        claims = _jwt_claims(tokens.id_token)
        for name in ("email", "preferred_username", "upn"):
            value = claims.get(name)
            if isinstance(value, str) and "@" in value:
                return value.strip().lower()
    if client.userinfo_url:
        answer = _call(
            urllib.request.Request(client.userinfo_url, headers={"Authorization": f"Bearer {tokens.access_token}"}),
            client.name,
        )
        for name in ("email", "default_email", "preferred_username"):
            value = answer.get(name)
            if isinstance(value, str) and "@" in value:
                return value.strip().lower()
    raise OAuthError(f"{client.name} did not say which mailbox was signed in to")


# --- HTTP ---------------------------------------------------------------------------


def _token_call(client: Client, form: dict) -> Tokens:
    form = {**form, "client_id": client.client_id}
    if client.client_secret:
        form["client_secret"] = client.client_secret
    request = urllib.request.Request(
        client.token_url,
        data=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
    )
    answer = _call(request, client.name)
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise OAuthError(f"{client.name}'s token endpoint answered without an access token")
    try:
        expires_in = int(answer.get("expires_in") or 3600)
    except (TypeError, ValueError):
        expires_in = 3600
    return Tokens(token, expires_in, str(answer.get("refresh_token") or ""), str(answer.get("id_token") or ""))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


def _call(request: urllib.request.Request, name: str) -> dict:
    """The JSON answer, or an OAuthError with the provider's own error."""
    host = urllib.parse.urlsplit(request.full_url).hostname or "?"
    try:
        with _opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            body = response.read(MAX_ANSWER_BYTES)
            status = response.status
    except urllib.error.HTTPError as error:
        body, status = error.read(MAX_ANSWER_BYTES), error.code
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise OAuthError(f"{name}'s endpoint ({host}) did not answer: {reason}") from None
    try:
        answer = json.loads(body)
        if not isinstance(answer, dict):
            raise ValueError
    except ValueError:
        raise OAuthError(f"{name}'s endpoint ({host}) answered {status} with something that is not JSON") from None
    if status >= 400 or "error" in answer:
        code = str(answer.get("error") or status)
        said = str(answer.get("error_description") or "").strip()
        message = f"{name} refused: {code}" + (f" ({said})" if said else "")
        raise OAuthError(message[:1000], refused=code == "invalid_grant")
    return answer


def _jwt_claims(token: str) -> dict:
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}
