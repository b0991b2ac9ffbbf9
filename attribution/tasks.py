from celery import shared_task
from django.utils import timezone

from . import retention


@shared_task
def erase_personal_data() -> dict:
    """Beat: erase letters' text and sender details past PERSONAL_DATA_DAYS (see retention)."""
    return retention.erase_personal_data(timezone.now()).as_dict()
