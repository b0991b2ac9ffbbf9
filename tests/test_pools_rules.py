"""Issue 3: token decoder, uploaded pools, static addresses, rule conditions,
abuse caps, pool health and retention."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from attribution.models import Lead, MatchKind
from substitution import pools, selectors, services, tokens
from substitution.conditions import Visit, compile_pattern
from substitution.decoder import Match, decode_address, one_edit_variants
from substitution.models import Address, Block, Lease, Pool, PoolExhaustion, Rule, RuleCondition, StaticAddress
from substitution.rules import rules_snapshot
from substitution.visits import VisitRequest
from substitution.visits import substitute as substitute_visit
from tests.factories import make_setup
from tracker.models import Visitor

pytestmark = pytest.mark.django_db
NOW = timezone.now().replace(microsecond=0)


def visitor(site, vid):
    return Visitor.objects.create(site=site, vid=vid, created_at=NOW, last_seen_at=NOW)


def substitute(*, snapshot, visitor, visit, now):
    """What the visit is shown under the snapshot's site's rules."""
    request = VisitRequest(site_id=snapshot.site_id, now=now, facts=visit, visitor_id=visitor.pk if visitor else None)
    return substitute_visit(request)


# --- Tokens and the decoder ---------------------------------------------------


def test_the_token_index_finds_every_string_within_two_edits():
    index = tokens.TokenIndex(["k7m2x"])
    assert index.near("k7m2x")
    assert index.near("k7m3x")  # one substitution
    assert index.near("k8m3x")  # two substitutions
    assert index.near("7km2x")  # transposition
    assert index.near("7km3x")  # transposition + substitution
    assert index.near("7kmx2")  # two transpositions
    assert index.near("7m2xa")  # deletion + insertion
    assert not index.near("pqrst")


def test_generated_tokens_of_a_large_pool_stay_three_edits_apart():
    issued = tokens.new_tokens(800, [], 5)
    assert len(set(issued)) == 800
    sample = issued[:150]
    assert all(tokens.edit_distance(a, b) >= 3 for i, a in enumerate(sample) for b in sample[:i])
    assert not set("".join(issued)) & set("0o1li")


def test_a_pool_that_cannot_fit_more_tokens_says_so():
    with pytest.raises(ValueError, match="No room"):
        tokens.new_tokens(2000, [], 3)


def test_the_decoder_reads_exact_corrected_and_ambiguous_addresses():
    setup = make_setup(pool_size=5)
    address = setup.pool.addresses.order_by("id").first()
    project = setup.project.pk
    assert decode_address(project, address.email.upper()).kind == Match.EXACT
    token = address.token
    typo = ("z" if token[0] != "z" else "y") + token[1:]
    decoded = decode_address(project, f"info+{typo}@shop.test")
    assert decoded.kind == Match.CORRECTED and decoded.address == address
    swapped = token[1] + token[0] + token[2:]
    assert decode_address(project, f"info+{swapped}@shop.test").address == address
    # Two edits from this token and more than one from every issued token:
    # no address it could be a typo of.
    issued = list(setup.pool.addresses.values_list("token", flat=True))
    far = next(
        candidate
        for first in "abcdefghjkmnpqrstuvwxyz"
        for second in "abcdefghjkmnpqrstuvwxyz"
        if (candidate := first + second + token[2:]) != token
        and all(tokens.edit_distance(candidate, other) >= 2 for other in issued)
    )
    ambiguous = decode_address(project, f"info+{far}@shop.test")
    assert (ambiguous.kind, ambiguous.address, ambiguous.pool) == (Match.AMBIGUOUS, None, setup.pool)
    assert decode_address(project, "info+@shop.test") is None
    assert decode_address(project, "someone@else.test") is None
    assert decode_address(project, "info@shop.test") is None


def test_one_edit_variants_include_look_alike_characters():
    variants = one_edit_variants("abc")
    assert {"bac", "ab", "abcd", "abz", "a0c"} <= variants
    assert "abc" not in variants


def test_the_decoder_knows_static_channel_addresses():
    setup = make_setup()
    StaticAddress.objects.create(project=setup.project, name="Billboard", email="Board@Shop.test", source="billboard")
    decoded = decode_address(setup.project.pk, "board@shop.test")
    assert decoded.kind == Match.STATIC and decoded.static_address.source == "billboard"


# --- Uploaded pools -----------------------------------------------------------


def test_an_uploaded_list_is_validated_for_syntax_duplicates_and_domain():
    setup = make_setup()
    pool = Pool.objects.create(
        project=setup.project, name="Aliases", kind=Pool.Kind.UPLOADED, base_email="info@shop.test"
    )
    taken = setup.pool.addresses.first().email
    text = f'sales@shop.test\nsales@shop.test\nnot-an-address@\nx@evil.test\n{taken}\n"Ops" <ops@mail.shop.test>'
    fresh, errors = pools.validate_uploaded_addresses(pool, text)
    assert fresh == ["sales@shop.test", "ops@mail.shop.test"]
    assert any("listed twice" in e for e in errors)
    assert any("not a valid address" in e for e in errors)
    assert any("evil.test" in e for e in errors)
    assert any(taken in e and "elsewhere" in e for e in errors)


def test_a_csv_upload_adds_addresses_and_resizing_leaves_them_alone():
    setup = make_setup()
    pool = Pool.objects.create(
        project=setup.project, name="Aliases", kind=Pool.Kind.UPLOADED, base_email="info@shop.test"
    )
    fresh, errors = pools.validate_uploaded_addresses(pool, "email,name\na1@shop.test,One\na2@shop.test,Two\n")
    assert errors == []
    assert pools.pool_add_uploaded(pool, fresh) == 2
    assert services.pool_fill(pool) == 0
    assert set(pool.addresses.values_list("email", flat=True)) == {"a1@shop.test", "a2@shop.test"}


def test_the_pool_admin_refuses_a_bad_upload_with_the_reasons(admin_client):
    setup = make_setup()
    response = admin_client.post(
        "/admin/substitution/pool/add/",
        {
            "project": setup.project.pk,
            "name": "Aliases",
            "kind": "uploaded",
            "base_email": "info@shop.test",
            "size": 1,
            "hold_minutes": 30,
            "exhausted_policy": "original",
            "max_live_leases_per_ip": 5,
            "upload_text": "good@shop.test\nbad@evil.test",
        },
    )
    assert response.status_code == 200
    assert b"evil.test" in response.content
    assert not Pool.objects.filter(name="Aliases").exists()


# --- Rules, conditions, static tracking --------------------------------------


def test_a_bad_or_long_pattern_is_a_validation_error():
    setup = make_setup()
    with pytest.raises(ValidationError):
        RuleCondition(rule=setup.rule, field="utm_source", operator="matches", value="(unclosed").full_clean()
    with pytest.raises(ValueError):
        compile_pattern("a" * 201)
    # RE2: a pattern that backtracks catastrophically elsewhere is linear here.
    assert compile_pattern("(a+)+b").search("a" * 100_000 + "c") is None


def test_the_first_matching_rule_wins_and_conditions_must_all_hold():
    setup = make_setup()
    static = StaticAddress.objects.create(
        project=setup.project, name="Maps card", email="maps@shop.test", source="maps"
    )
    maps_rule = Rule.objects.create(project=setup.project, name="Maps", order=0, kind="static", static_address=static)
    maps_rule.sites.add(setup.site)
    maps_rule.blocks.add(setup.block)
    RuleCondition.objects.create(rule=maps_rule, field="utm_source", operator="equals", value="MAPS")
    RuleCondition.objects.create(rule=maps_rule, field="device_type", operator="matches", value="^(mobile|tablet)$")
    setup.rule.order = 1
    setup.rule.save()
    snapshot = rules_snapshot(setup.site.pk, fresh=True)
    v = visitor(setup.site, "v" * 10)

    from_maps = substitute(snapshot=snapshot, visitor=v, visit=Visit(utm_source="maps", device_type="mobile"), now=NOW)
    assert from_maps.subs == [{"block": setup.block.pk, "email": "maps@shop.test"}]
    assert Lease.objects.count() == 0  # a static address needs no lease

    desktop = substitute(snapshot=snapshot, visitor=v, visit=Visit(utm_source="maps", device_type="desktop"), now=NOW)
    assert desktop.subs[0]["email"].startswith("info+")
    # Without consent (no visitor) a static rule still applies, a dynamic one does not.
    anonymous = substitute(
        snapshot=snapshot, visitor=None, visit=Visit(utm_source="maps", device_type="tablet"), now=NOW
    )
    assert anonymous.subs[0]["email"] == "maps@shop.test"
    assert substitute(snapshot=snapshot, visitor=None, visit=Visit(), now=NOW).subs == []


def test_an_inactive_rule_and_a_negated_condition_are_honoured():
    setup = make_setup()
    RuleCondition.objects.create(
        rule=setup.rule, field="referrer_domain", operator="contains", value="spam", negate=True
    )
    snapshot = rules_snapshot(setup.site.pk, fresh=True)
    v = visitor(setup.site, "w" * 10)
    assert substitute(snapshot=snapshot, visitor=v, visit=Visit(referrer_domain="spamhub.test"), now=NOW).subs == []
    assert substitute(snapshot=snapshot, visitor=v, visit=Visit(referrer_domain="news.test"), now=NOW).subs
    setup.rule.active = False
    setup.rule.save()
    assert rules_snapshot(setup.site.pk, fresh=True).rules == ()


def test_one_block_serves_several_sites():
    first = make_setup(name="One")
    from tracker.models import Site

    second = Site.objects.create(project=first.project, name="Second", original_email="info@shop.test")
    first.rule.sites.add(second)
    assert [b[0] for b in rules_snapshot(second.pk, fresh=True).blocks] == [first.block.pk]


def test_a_block_by_class_needs_a_plain_name():
    setup = make_setup()
    with pytest.raises(ValidationError):
        Block(project=setup.project, name="x", kind="class", selector="").full_clean()
    with pytest.raises(ValidationError):
        Block(project=setup.project, name="x", kind="class", selector="a b{").full_clean()
    Block(project=setup.project, name="x", kind="selector", selector="footer .contact a").full_clean()


def test_a_letter_to_a_static_address_is_a_lead_from_its_channel():
    from mailbox_sync.services import ingest_raw
    from tests.factories import letter_bytes

    setup = make_setup()
    StaticAddress.objects.create(
        project=setup.project,
        name="Avito ad",
        email="avito@shop.test",
        channel="static",
        source="avito",
        campaign="flats",
    )
    letter = ingest_raw(mailbox=setup.mailbox, raw=letter_bytes(to="avito@shop.test"))
    lead = Lead.objects.get(pk=letter.lead_id)
    assert (lead.match_kind, lead.source, lead.campaign, lead.channel) == (MatchKind.STATIC, "avito", "flats", "static")
    assert lead.session is None


def test_a_mistyped_token_is_attributed_as_corrected():
    from mailbox_sync.services import ingest_raw
    from tests.factories import letter_bytes

    setup = make_setup()
    v = visitor(setup.site, "t" * 10)
    from tracker.models import Session

    Session.objects.create(visitor=v, started_at=NOW, last_seen_at=NOW, utm_source="news", source="news")
    email = services.lease_acquire(pool=setup.pool, visitor=v, now=NOW).email
    token = email.split("+")[1].split("@")[0]
    # Two neighbouring characters swapped; they must differ (tokens are random,
    # and one in 31 starts with a character twice, which swaps into itself).
    i = next(i for i in range(len(token) - 1) if token[i] != token[i + 1])
    typo = token[:i] + token[i + 1] + token[i] + token[i + 2 :]
    assert typo != token
    letter = ingest_raw(
        mailbox=setup.mailbox, raw=letter_bytes(to=f"info+{typo}@shop.test"), received_at=NOW + timedelta(minutes=1)
    )
    lead = Lead.objects.get(pk=letter.lead_id)
    assert lead.match_kind == MatchKind.CORRECTED
    assert lead.visitor_id == v.pk and lead.source == "news"


# --- Abuse caps, health, retention --------------------------------------------


def test_one_ip_cannot_drain_a_pool_with_forged_visitor_ids():
    setup = make_setup(pool_size=20)
    setup.pool.max_live_leases_per_ip = 3
    setup.pool.save()
    results = [
        services.lease_acquire(pool=setup.pool, visitor=visitor(setup.site, f"forged{i:04d}"), now=NOW, ip_hash="ip-a")
        for i in range(10)
    ]
    assert sum(1 for r in results if r.email) == 3
    assert {r.refused for r in results if not r.email} == {"ip_cap"}
    other = services.lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "honest0001"), now=NOW, ip_hash="ip-b")
    assert other.email
    assert PoolExhaustion.objects.count() == 0


def test_pool_health_reports_peaks_exhaustions_and_a_recommended_size():
    setup = make_setup(pool_size=3, hold_minutes=30)
    day_ago = NOW - timedelta(days=1)
    for i in range(4):
        services.lease_acquire(pool=setup.pool, visitor=visitor(setup.site, f"peak{i:06d}"), now=day_ago)
    health = selectors.pool_health(setup.pool, NOW)
    assert health.size == 3
    assert health.live == 0
    assert max(p for _d, p in health.peaks) == 3
    assert health.exhaustions == 1
    assert health.recommended >= 4
    assert health.too_small
    assert len(health.peaks) == 7


def test_the_pool_page_shows_health_with_a_chart_and_a_warning(admin_client):
    setup = make_setup(pool_size=1)
    for i in range(2):
        services.lease_acquire(pool=setup.pool, visitor=visitor(setup.site, f"chart{i:05d}"), now=NOW)
    page = admin_client.get(f"/admin/substitution/pool/{setup.pool.pk}/change/").content.decode()
    assert "<svg" in page and "Live leases now: <strong>1</strong>" in page
    assert "The pool is too small" in page


def test_a_pool_serving_two_blocks_shows_its_health_by_block(admin_client):
    setup = make_setup(pool_size=5)
    footer = Block.objects.create(project=setup.project, name="Footer", kind=Block.Kind.ID, selector="footer-email")
    setup.rule.blocks.add(footer)
    for i, block in enumerate((setup.block, footer, footer)):
        services.lease_acquire(
            pool=setup.pool, visitor=visitor(setup.site, f"byblock{i:03d}"), now=NOW, block_id=block.pk
        )
    assert selectors.pool_health(setup.pool, NOW, block_id=footer.pk).live == 2
    assert selectors.pool_blocks(setup.pool) == [setup.block, footer]

    page = admin_client.get(f"/admin/substitution/pool/{setup.pool.pk}/change/").content.decode()
    assert "Live leases now: <strong>3</strong>" in page
    assert "By block" in page
    assert f"Block “{footer.name}”" in page and f"Block “{setup.block.name}”" in page
    assert page.count("Peak concurrent leases per day") == 3
    assert "Live leases now: <strong>2</strong> · peak (7 days): 2" in page
    assert "Live leases now: <strong>1</strong> · peak (7 days): 1" in page


def test_a_pool_serving_one_block_shows_no_health_by_block(admin_client):
    setup = make_setup()
    page = admin_client.get(f"/admin/substitution/pool/{setup.pool.pk}/change/").content.decode()
    assert page.count("Peak concurrent leases per day") == 1 and "By block" not in page


def test_old_leases_no_lead_refers_to_are_purged():
    setup = make_setup()
    old = NOW - timedelta(days=120)
    kept = services.lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "oldkept001"), now=old).lease
    gone = services.lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "oldgone001"), now=old).lease
    services.release_expired_leases(setup.pool, old + timedelta(hours=1))
    Lead.objects.create(
        project=setup.project,
        created_at=old,
        last_letter_at=old,
        sender_email="c@x.test",
        match_kind="live_lease",
        lease=kept,
    )
    fresh = services.lease_acquire(pool=setup.pool, visitor=visitor(setup.site, "freshone01"), now=NOW).lease
    assert services.purge_old_leases(NOW) == 1
    assert set(Lease.objects.values_list("id", flat=True)) == {kept.pk, fresh.pk}
    assert not Lease.objects.filter(pk=gone.pk).exists()
    assert Address.objects.filter(pool=setup.pool).count() == 5
