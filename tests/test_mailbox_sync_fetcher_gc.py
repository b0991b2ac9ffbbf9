"""mailbox_sync: the fetching and parsing children fork with the parent's
objects frozen out of the garbage collector, and the parent gets them back
at once, unless it had frozen its objects itself."""

import gc

import pytest

from mailbox_sync import imap
from mailbox_sync.fetcher import ChildFetch


def frozen_in_child(batch):
    return gc.get_freeze_count() > 0


def fetch_one(account) -> list:
    _user, password, mailbox = account
    with imap.connect(mailbox, password) as client:
        uidvalidity, _uidnext = imap.select_readonly(client, "INBOX")

    def produce(client):
        yield "batch"

    fetching = ChildFetch(lambda: imap.connect(mailbox, password), "INBOX", uidvalidity, produce, frozen_in_child, 2)
    with fetching as batches:
        return list(batches)


@pytest.mark.imap
def test_the_children_fork_with_the_parents_objects_frozen_and_the_parent_gets_them_back(account):
    gc.unfreeze()
    assert fetch_one(account) == [True]  # the parsing child saw the parent's objects frozen
    assert gc.get_freeze_count() == 0


@pytest.mark.imap
def test_objects_the_process_froze_itself_stay_frozen(account):
    kept = [object()]  # a container the collector tracks, frozen below
    gc.freeze()
    try:
        assert fetch_one(account) == [True]
        # Still frozen: in none of the generations the collector walks. (Not
        # by the frozen count, which falls whenever a frozen object dies.)
        assert not any(found is kept for found in gc.get_objects())
    finally:
        gc.unfreeze()
