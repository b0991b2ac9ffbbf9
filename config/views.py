from django.http import JsonResponse


def ping(request):
    """A bare JSON endpoint: load balancers' health check, and the baseline the
    collect benchmark is measured against."""
    return JsonResponse({"ok": True})
