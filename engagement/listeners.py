"""Lead events (after commit): a lead's letters that answer a tracked message
are that recipient's replies."""

from . import replies


def leads_changed(lead_ids: list[int]) -> None:
    replies.record_replies_of_leads(lead_ids)
