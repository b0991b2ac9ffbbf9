from django.conf import settings


def client_ip(request) -> str:
    """The client address, believing only as many X-Forwarded-For entries as
    there are trusted proxies in front (a client can forge the rest)."""
    return trusted_client_ip(request.META)


def trusted_client_ip(meta) -> str:
    """client_ip from a request's META or a WSGI environ."""
    remote = meta.get("REMOTE_ADDR", "")
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    forwarded = [p.strip() for p in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
    if len(forwarded) < count:
        return forwarded[0] if forwarded else remote
    return forwarded[-count]
