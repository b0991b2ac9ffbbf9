"""Replies: a letter read from the inbox whose In-Reply-To / References name a
tracked message's Message-ID is a reply of that recipient."""


def record_replies_of_leads(lead_ids: list[int]) -> int:
    return 0
