from datetime import datetime, timedelta

from .models import Lease, Pool, PoolExhaustion


def live_lease_count(pool: Pool, now: datetime) -> int:
    return Lease.objects.filter(pool=pool, released_at__isnull=True, expires_at__gt=now).count()


def exhaustion_count(pool: Pool, now: datetime, days: int = 7) -> int:
    return PoolExhaustion.objects.filter(pool=pool, at__gte=now - timedelta(days=days)).count()
