"""Pools, tokens, leases and rules: which address a visitor is shown."""

import itertools
import re
import threading
from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, connection, transaction

from substitution import selectors, tokens
from substitution.models import Address, Lease, Pool, PoolExhaustion, Rule
from substitution.services import lease_acquire, pool_fill
from substitution.visits import VisitRequest
from substitution.visits import substitute as substitute_visit
from tests.factories import make_setup, minutes
from tracker.models import Visitor

T0 = datetime(2025, 7, 31, 12, 0, tzinfo=UTC)


def visitor(site, name: str) -> Visitor:
    return Visitor.objects.create(site=site, vid=f"visitor-{name}", created_at=T0, last_seen_at=T0)


def substitute(*, site, visitor, now):
    """What a visitor (None: no consent) is shown on the site, its rules read now."""
    visitor_id = visitor.pk if visitor else None
    return substitute_visit(VisitRequest(site_id=site.pk, now=now, visitor_id=visitor_id, fresh=True))


def addresses(pool) -> list[Address]:
    return list(Address.objects.filter(pool=pool).order_by("id"))


def live_leases(pool) -> list[Lease]:
    return list(Lease.objects.filter(pool=pool, released_at__isnull=True))


# Tokens


def test_the_token_alphabet_has_no_look_alike_characters():
    assert not set("0o1li") & set(tokens.ALPHABET)
    assert tokens.ALPHABET == tokens.ALPHABET.lower()


def test_edit_distance_counts_insertions_deletions_substitutions_and_a_transposition_as_one_edit():
    assert tokens.edit_distance("k7m2", "k7m2") == 0
    assert tokens.edit_distance("k7m2", "k7m3") == 1
    assert tokens.edit_distance("k7m2", "k7m") == 1
    assert tokens.edit_distance("k7m2", "k7mm2") == 1
    assert tokens.edit_distance("k7m2", "7km2") == 1
    assert tokens.edit_distance("k7m2", "k72m") == 1
    assert tokens.edit_distance("kitten", "sitting") == 3
    assert tokens.edit_distance("", "abc") == 3


def test_new_tokens_are_short_lowercase_and_pairwise_at_least_three_edits_apart():
    existing = tokens.new_tokens(10, [], 4)
    fresh = tokens.new_tokens(30, existing, 4)
    issued = existing + fresh
    assert len(set(issued)) == 40
    assert all(re.fullmatch(f"[{tokens.ALPHABET}]{{4}}", token) for token in issued)
    assert all(tokens.edit_distance(a, b) >= tokens.MIN_DISTANCE for a, b in itertools.combinations(issued, 2))


def test_new_tokens_refuses_when_the_token_space_is_too_crowded():
    # Two one-letter tokens are always one edit apart.
    with pytest.raises(ValueError):
        tokens.new_tokens(2, [], 1, attempts_per_token=50)


@pytest.mark.django_db
def test_a_plus_pool_issues_local_plus_token_at_domain_addresses():
    setup = make_setup(original="info@shop.test", pool_size=5)
    issued = addresses(setup.pool)
    assert len(issued) == 5
    for address in issued:
        assert re.fullmatch(f"info\\+[{tokens.ALPHABET}]{{4}}@shop\\.test", address.email)
        assert address.email == f"info+{address.token}@shop.test"


@pytest.mark.django_db
def test_a_dash_pool_issues_lowercase_local_dash_token_at_domain_addresses():
    setup = make_setup(pool_size=1)
    pool = Pool.objects.create(
        project=setup.project, name="Catch-all", kind=Pool.Kind.DASH, base_email="Sales@Shop.test", size=3
    )
    assert pool_fill(pool) == 3
    for address in addresses(pool):
        assert address.email == f"sales-{address.token}@shop.test"


# pool_fill


@pytest.mark.django_db
def test_pool_fill_issues_exactly_size_addresses_and_then_nothing_more():
    setup = make_setup(pool_size=5)
    assert Address.objects.filter(pool=setup.pool, active=True).count() == 5
    assert pool_fill(setup.pool) == 0
    assert Address.objects.filter(pool=setup.pool).count() == 5


@pytest.mark.django_db
def test_growing_a_pool_adds_addresses_and_keeps_the_old_ones():
    setup = make_setup(pool_size=5)
    before = {a.email for a in addresses(setup.pool)}
    setup.pool.size = 8
    setup.pool.save()
    assert pool_fill(setup.pool) == 3
    after = {a.email for a in addresses(setup.pool)}
    assert before < after and len(after) == 8
    all_tokens = [a.token for a in addresses(setup.pool)]
    assert all(tokens.edit_distance(a, b) >= 3 for a, b in itertools.combinations(all_tokens, 2))


@pytest.mark.django_db
def test_shrinking_a_fresh_pool_deactivates_the_surplus_without_deleting_it():
    setup = make_setup(pool_size=5)
    setup.pool.size = 3
    setup.pool.save()
    assert pool_fill(setup.pool) == -2
    assert Address.objects.filter(pool=setup.pool, active=True).count() == 3
    assert Address.objects.filter(pool=setup.pool).count() == 5


@pytest.mark.django_db
def test_shrinking_never_deactivates_an_address_with_a_live_lease_and_keeps_lease_history():
    setup = make_setup(pool_size=4)
    gone = lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "gone"), now=T0)
    held_a = lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "a"), now=T0 + minutes(40))
    held_b = lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "b"), now=T0 + minutes(40))
    gone.lease.refresh_from_db()
    assert gone.lease.released_at == T0 + minutes(30)

    setup.pool.size = 1
    setup.pool.save()
    pool_fill(setup.pool)

    active = set(Address.objects.filter(pool=setup.pool, active=True).values_list("email", flat=True))
    assert active == {held_a.email, held_b.email}
    assert Lease.objects.filter(pool=setup.pool).count() == 3
    assert {lease.address.email for lease in live_leases(setup.pool)} == {held_a.email, held_b.email}

    # Growing again revives the set-aside addresses before issuing new ones.
    setup.pool.size = 4
    setup.pool.save()
    assert pool_fill(setup.pool) == 2
    assert Address.objects.filter(pool=setup.pool).count() == 4
    assert Address.objects.filter(pool=setup.pool, active=True).count() == 4


# lease_acquire


@pytest.mark.django_db
def test_the_same_visitor_keeps_the_same_address_and_its_expiry_extends():
    setup = make_setup(pool_size=3, hold_minutes=30)
    ivan = visitor(setup.site, "ivan")
    first = lease_acquire(pool=setup.pool, visitor=ivan, now=T0)
    again = lease_acquire(pool=setup.pool, visitor=ivan, now=T0 + minutes(20))
    assert again.email == first.email
    assert first.expires_at == T0 + minutes(30)
    assert again.expires_at == T0 + minutes(50)
    lease = Lease.objects.get(visitor=ivan)
    assert (lease.last_activity_at, lease.expires_at, lease.released_at) == (T0 + minutes(20), T0 + minutes(50), None)


@pytest.mark.django_db
def test_two_visitors_get_different_addresses():
    setup = make_setup(pool_size=3)
    one = lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "one"), now=T0)
    two = lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "two"), now=T0)
    assert one.email and two.email and one.email != two.email


@pytest.mark.django_db
def test_the_database_refuses_a_second_unreleased_lease_on_one_address():
    setup = make_setup(pool_size=2)
    taken = lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "one"), now=T0)
    with pytest.raises(IntegrityError), transaction.atomic():
        Lease.objects.create(
            pool=setup.pool,
            address=taken.lease.address,
            visitor=visitor(setup.site, "two"),
            started_at=T0,
            last_activity_at=T0,
            expires_at=T0 + minutes(30),
        )


@pytest.mark.django_db
def test_many_allocations_over_time_never_leave_two_unreleased_leases_on_one_address():
    setup = make_setup(pool_size=3, hold_minutes=30)
    people = [visitor(setup.site, str(n)) for n in range(6)]
    for step in range(30):
        lease_acquire(pool=setup.pool, visitor=people[step * 7 % 6], now=T0 + minutes(step * 11))
        held = [lease.address_id for lease in live_leases(setup.pool)]
        assert len(held) == len(set(held))


@pytest.mark.django_db
def test_a_lease_past_its_hold_is_released_at_its_expiry_and_the_address_is_free_again():
    setup = make_setup(pool_size=1, hold_minutes=30)
    first = lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "first"), now=T0)
    second = lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "second"), now=T0 + minutes(45))
    assert second.email == first.email
    first.lease.refresh_from_db()
    assert first.lease.released_at == T0 + minutes(30)
    assert first.lease.end_reason == Lease.EndReason.EXPIRED
    assert Address.objects.get(email=first.email).last_released_at == T0 + minutes(30)
    assert [lease.pk for lease in live_leases(setup.pool)] == [second.lease.pk]


@pytest.mark.django_db
def test_a_visitor_back_after_the_hold_gets_a_new_lease_not_the_old_one_extended():
    setup = make_setup(pool_size=2, hold_minutes=30)
    ivan = visitor(setup.site, "ivan")
    first = lease_acquire(pool=setup.pool, visitor=ivan, now=T0)
    later = lease_acquire(pool=setup.pool, visitor=ivan, now=T0 + minutes(90))
    assert later.email == first.email
    assert later.lease.pk != first.lease.pk
    first.lease.refresh_from_db()
    assert (first.lease.released_at, first.lease.end_reason) == (T0 + minutes(30), Lease.EndReason.EXPIRED)


@pytest.mark.django_db
def test_allocation_takes_the_free_address_released_longest_ago():
    setup = make_setup(pool_size=3, hold_minutes=30)
    a, b, c = (visitor(setup.site, n) for n in "abc")
    held = {v: lease_acquire(pool=setup.pool, visitor=v, now=T0).email for v in (a, b, c)}
    lease_acquire(pool=setup.pool, visitor=a, now=T0 + minutes(5))  # a's address is released last
    lease_acquire(pool=setup.pool, visitor=c, now=T0 + minutes(3))  # b's is released first
    newcomer = lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "new"), now=T0 + minutes(60))
    assert newcomer.email == held[b]


@pytest.mark.django_db
def test_allocation_takes_a_never_used_address_before_a_released_one():
    setup = make_setup(pool_size=3, hold_minutes=30)
    used = lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "early"), now=T0)
    newcomer = lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "new"), now=T0 + minutes(60))
    assert newcomer.email != used.email
    assert Address.objects.get(email=newcomer.email).last_released_at is None


@pytest.mark.django_db
def test_a_returning_visitor_gets_their_previous_address_back_when_it_is_free():
    setup = make_setup(pool_size=3, hold_minutes=30)
    ivan = visitor(setup.site, "ivan")
    before = lease_acquire(pool=setup.pool, visitor=ivan, now=T0)
    other = lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "other"), now=T0 + minutes(60))
    # By LRU the never-used third address would come first; ivan's own comes back instead.
    back = lease_acquire(pool=setup.pool, visitor=ivan, now=T0 + minutes(120))
    assert back.email == before.email
    assert other.email != before.email


@pytest.mark.django_db
def test_a_returning_visitor_whose_address_is_held_by_someone_else_gets_another():
    setup = make_setup(pool_size=2, hold_minutes=30)
    ivan = visitor(setup.site, "ivan")
    before = lease_acquire(pool=setup.pool, visitor=ivan, now=T0)
    olga = lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "olga"), now=T0 + minutes(1))
    petr = lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "petr"), now=T0 + minutes(60))
    assert petr.email == before.email  # released longest ago
    back = lease_acquire(pool=setup.pool, visitor=ivan, now=T0 + minutes(61))
    assert back.email == olga.email


@pytest.mark.django_db
def test_an_exhausted_pool_with_policy_original_shows_no_address_and_counts_the_event():
    setup = make_setup(pool_size=1, policy=Pool.ExhaustedPolicy.ORIGINAL)
    holder = lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "holder"), now=T0)
    refused = lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "late"), now=T0 + minutes(1))
    assert (refused.email, refused.expires_at, refused.lease) == ("", None, None)
    exhaustion = PoolExhaustion.objects.get(pool=setup.pool)
    assert (exhaustion.at, exhaustion.policy) == (T0 + minutes(1), Pool.ExhaustedPolicy.ORIGINAL)
    assert [lease.pk for lease in live_leases(setup.pool)] == [holder.lease.pk]
    assert selectors.exhaustion_count(setup.pool, T0 + minutes(2)) == 1
    assert selectors.exhaustion_count(setup.pool, T0 + minutes(60 * 24 * 8)) == 0


@pytest.mark.django_db
def test_an_exhausted_pool_with_policy_take_over_takes_the_least_recently_active_lease():
    setup = make_setup(pool_size=2, policy=Pool.ExhaustedPolicy.TAKE_OVER)
    active, idle = visitor(setup.site, "active"), visitor(setup.site, "idle")
    lease_acquire(pool=setup.pool, visitor=active, now=T0)
    idle_allocation = lease_acquire(pool=setup.pool, visitor=idle, now=T0 + minutes(1))
    lease_acquire(pool=setup.pool, visitor=active, now=T0 + minutes(5))

    taker = lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "taker"), now=T0 + minutes(10))

    assert taker.email == idle_allocation.email
    assert taker.expires_at == T0 + minutes(40)
    idle_allocation.lease.refresh_from_db()
    assert idle_allocation.lease.released_at == T0 + minutes(10)
    assert idle_allocation.lease.end_reason == Lease.EndReason.TAKEN_OVER
    assert Address.objects.get(email=taker.email).last_released_at == T0 + minutes(10)
    assert PoolExhaustion.objects.get(pool=setup.pool).policy == Pool.ExhaustedPolicy.TAKE_OVER
    assert selectors.live_lease_count(setup.pool, T0 + minutes(10)) == 2


# Concurrency on PostgreSQL


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("visitor_count", [4, 9])
def test_concurrent_allocations_never_share_an_address_and_fill_the_pool(visitor_count):
    assert connection.vendor == "postgresql"
    pool_size = 5
    setup = make_setup(pool_size=pool_size)
    people = [visitor(setup.site, f"concurrent-{n}") for n in range(visitor_count)]
    barrier = threading.Barrier(visitor_count)
    results, errors = {}, []

    def allocate(person):
        try:
            connection.ensure_connection()
            barrier.wait(timeout=10)
            results[person.pk] = lease_acquire(pool=setup.pool, visitor=person, now=T0).email
        except Exception as error:  # reported below; a thread cannot fail the test itself
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=allocate, args=(person,)) for person in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    shown = [email for email in results.values() if email]
    assert len(results) == visitor_count
    assert len(shown) == min(visitor_count, pool_size)
    assert len(set(shown)) == len(shown)
    held = [lease.address_id for lease in live_leases(setup.pool)]
    assert len(held) == len(set(held)) == len(shown)
    assert PoolExhaustion.objects.filter(pool=setup.pool).count() == max(0, visitor_count - pool_size)


# substitute


@pytest.mark.django_db
def test_substitute_answers_the_leased_address_for_each_block_of_the_rule():
    setup = make_setup(pool_size=2)
    result = substitute(site=setup.site, visitor=visitor(setup.site, "ivan"), now=T0)
    lease = Lease.objects.get(pool=setup.pool)
    assert result.subs == [{"block": setup.block.pk, "email": lease.address.email}]
    assert result.expires_at == T0 + minutes(30)


@pytest.mark.django_db
def test_substitute_without_a_visitor_returns_no_dynamic_substitutions():
    setup = make_setup(pool_size=2)
    result = substitute(site=setup.site, visitor=None, now=T0)
    assert (result.subs, result.expires_at) == ([], None)
    assert not Lease.objects.exists()


@pytest.mark.django_db
def test_substitute_keeps_the_original_when_the_pool_is_exhausted():
    setup = make_setup(pool_size=1)
    substitute(site=setup.site, visitor=visitor(setup.site, "first"), now=T0)
    result = substitute(site=setup.site, visitor=visitor(setup.site, "second"), now=T0)
    assert (result.subs, result.expires_at) == ([], None)


@pytest.mark.django_db
def test_substitute_skips_an_inactive_rule_and_the_first_active_rule_by_order_wins():
    setup = make_setup(pool_size=2)
    setup.rule.order = 5
    setup.rule.save()
    other_pool = Pool.objects.create(project=setup.project, name="VIP", base_email="vip@shop.test", size=2)
    pool_fill(other_pool)
    vip = Rule.objects.create(project=setup.project, name="VIP", pool=other_pool, order=1, active=False)
    vip.sites.add(setup.site)
    vip.blocks.add(setup.block)

    result = substitute(site=setup.site, visitor=visitor(setup.site, "one"), now=T0)
    assert result.subs[0]["email"].startswith("info+")
    assert not Lease.objects.filter(pool=other_pool).exists()

    vip.active = True
    vip.save()
    result = substitute(site=setup.site, visitor=visitor(setup.site, "two"), now=T0)
    assert result.subs[0]["email"].startswith("vip+")


@pytest.mark.django_db
def test_substitute_with_every_rule_inactive_leases_nothing():
    setup = make_setup(pool_size=2)
    Rule.objects.filter(pk=setup.rule.pk).update(active=False)
    result = substitute(site=setup.site, visitor=visitor(setup.site, "one"), now=T0)
    assert result.subs == []
    assert not Lease.objects.exists()
