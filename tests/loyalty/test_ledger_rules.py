"""The ledger's rules, one by one, with the messages a support agent reads."""

from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.errors import LoyaltyError
from loyalty.models import Coupon, EntryKind, EntryStatus, LedgerEntry, ProgramSettings, Shortfall
from loyalty.services import (
    SET_TO,
    entry_approve,
    entry_reject,
    entry_reverse,
    entry_take_back,
    points_adjust,
    points_earn,
    reward_give,
)
from tests.factories import MemberFactory, RewardFactory

pytestmark = pytest.mark.django_db


def figures(member):
    member.refresh_from_db()
    return member.available_points, member.pending_points, member.lifetime_points


def test_credit_raises_available_and_lifetime_and_moves_the_tier(tiers, manager):
    member = MemberFactory()
    result = points_adjust(member=member, points=600, reason="Goodwill", actor=manager)
    assert result.entry.kind == EntryKind.ADJUSTMENT and result.entry.actor_user == manager
    assert figures(member) == (600, 0, 600)
    assert member.tier.name == "Silver"
    change = member.tier_changes.get()
    assert (change.from_tier.name, change.to_tier.name, change.entry) == ("Bronze", "Silver", result.entry)


def test_an_adjustment_answers_with_the_member_as_stored(tiers, manager):
    member = MemberFactory()
    points_adjust(member=member, points=100, reason="Start", actor=manager)
    result = points_adjust(member=member, points=450, reason="Goodwill", actor=manager)
    stored = LedgerEntry.objects.get(pk=result.entry.pk)
    assert (result.entry.points, result.entry.reason, result.entry.created_at) == (450, "Goodwill", stored.created_at)
    member.refresh_from_db()
    assert (result.member.available_points, result.member.lifetime_points, result.member.tier_id) == (
        550,
        550,
        member.tier_id,
    )
    assert member.tier.name == "Silver" and member.tier_changes.order_by("-id").first().entry == stored


def test_debit_beyond_available_is_refused_with_the_numbers(tiers, manager):
    member = MemberFactory(email="ann@shop.example")
    points_adjust(member=member, points=120, reason="Start", actor=manager)
    with pytest.raises(LoyaltyError, match="Cannot take 500 points from ann@shop.example: only 120 are available."):
        points_adjust(member=member, points=-500, reason="Oops", actor=manager)
    assert figures(member) == (120, 0, 120)
    assert LedgerEntry.objects.count() == 1


def test_negative_adjustment_lowers_lifetime_and_can_lower_the_tier(tiers, manager):
    member = MemberFactory()
    points_adjust(member=member, points=700, reason="Start", actor=manager)
    points_adjust(member=member, points=-300, reason="Correction", actor=manager)
    assert figures(member) == (400, 0, 400)
    assert member.tier.name == "Bronze"
    assert [c.to_tier.name for c in member.tier_changes.order_by("id")] == ["Silver", "Bronze"]


def test_cap_policy_takes_what_is_available_and_records_the_shortfall(tiers, manager):
    member = MemberFactory()
    points_adjust(member=member, points=100, reason="Start", actor=manager)
    result = points_adjust(member=member, points=-250, reason="Clawback", actor=manager, policy="cap")
    assert result.entry.points == -100 and result.shortfall == 150
    assert figures(member) == (0, 0, 0)
    assert Shortfall.objects.get().points == 150


def test_allow_policy_lets_the_balance_go_negative_and_earnings_pay_it_back(tiers, manager):
    member = MemberFactory()
    points_adjust(member=member, points=-80, reason="Debt", actor=manager, policy="allow")
    assert figures(member) == (-80, 0, -80)
    points_adjust(member=member, points=100, reason="Earned", actor=manager)
    assert figures(member)[0] == 20


def test_program_policy_is_used_when_none_is_given(tiers, manager):
    ProgramSettings.objects.update_or_create(pk=1, defaults={"negative_balance_policy": "allow"})
    member = MemberFactory()
    points_adjust(member=member, points=-10, reason="Debt", actor=manager)
    assert figures(member)[0] == -10


def test_set_to_posts_the_difference_and_nothing_when_already_there(tiers, manager):
    member = MemberFactory()
    points_adjust(member=member, points=300, reason="Start", actor=manager)
    down = points_adjust(member=member, points=120, reason="Set", actor=manager, apply_type=SET_TO)
    assert down.entry.points == -180
    same = points_adjust(member=member, points=120, reason="Set", actor=manager, apply_type=SET_TO)
    assert same.entry is None and not same.already_applied
    assert figures(member) == (120, 0, 120)
    assert LedgerEntry.objects.count() == 2


@pytest.mark.parametrize(
    ("points", "reason", "apply_type", "message"),
    [
        (0, "Why", "relative", "Points must not be 0."),
        (10, "   ", "relative", "A reason is required."),
        (-1, "Why", "set", "Set to needs a balance of 0 or more."),
        (10, "Why", "double", "Unknown apply type 'double': use relative or set."),
        ("12", "Why", "relative", "Points must be a whole number."),
    ],
)
def test_adjust_refuses_bad_input_with_a_clear_message(tiers, manager, points, reason, apply_type, message):
    member = MemberFactory()
    with pytest.raises(LoyaltyError) as refused:
        points_adjust(member=member, points=points, reason=reason, actor=manager, apply_type=apply_type)
    assert refused.value.message == message
    assert not LedgerEntry.objects.exists()


def test_support_agent_limit_is_enforced_with_the_limit_named(tiers, agent):
    ProgramSettings.objects.update_or_create(pk=1, defaults={"support_agent_limit": 500})
    member = MemberFactory()
    with pytest.raises(LoyaltyError, match="more than 500 points need a program manager: this one is 501 points"):
        points_adjust(member=member, points=501, reason="Big", actor=agent)
    assert points_adjust(member=member, points=500, reason="Fine", actor=agent).entry.points == 500


def test_an_agent_resending_a_managers_large_adjustment_is_told_already_applied(tiers, manager, agent):
    ProgramSettings.objects.update_or_create(pk=1, defaults={"support_agent_limit": 500})
    member = MemberFactory()
    first = points_adjust(member=member, points=5000, reason="Big", actor=manager, idempotency_key="form:7")
    again = points_adjust(member=member, points=5000, reason="Big", actor=agent, idempotency_key="form:7")
    assert again.already_applied and again.entry == first.entry
    assert figures(member) == (5000, 0, 5000)


def test_entries_posted_in_one_transaction_carry_the_moment_each_was_posted(tiers, manager):
    member = MemberFactory()
    first = points_adjust(member=member, points=10, reason="One", actor=manager)
    second = points_adjust(member=member, points=10, reason="Two", actor=manager)
    stored = list(LedgerEntry.objects.filter(member=member).order_by("id").values_list("created_at", flat=True))
    assert stored == [first.entry.created_at, second.entry.created_at]
    assert stored[0] < stored[1]


def test_same_idempotency_key_twice_is_already_applied_not_a_second_credit(tiers, system):
    member = MemberFactory()
    first = points_adjust(member=member, points=50, reason="Row 2", actor=system, idempotency_key="csv:abc:2")
    again = points_adjust(member=member, points=50, reason="Row 2", actor=system, idempotency_key="csv:abc:2")
    assert again.already_applied and again.entry == first.entry
    assert figures(member) == (50, 0, 50)


def test_earning_with_a_hold_is_pending_until_approved(tiers, manager, system):
    member = MemberFactory()
    result = points_earn(
        member=member,
        points=800,
        reason="Order 1001",
        actor=system,
        source="order",
        hold_until=timezone.now() + timedelta(days=14),
    )
    assert result.entry.status == EntryStatus.PENDING
    assert figures(member) == (0, 800, 0)
    entry_approve(entry=result.entry, actor=manager)
    assert figures(member) == (800, 0, 800)
    assert member.tier.name == "Silver"
    with pytest.raises(LoyaltyError, match=f"Entry #{result.entry.pk} is active, not pending."):
        entry_approve(entry=result.entry, actor=manager)


def test_reject_pending_removes_it_from_pending_and_needs_a_reason(tiers, manager, system):
    member = MemberFactory()
    entry = points_earn(
        member=member,
        points=50,
        reason="Order",
        actor=system,
        source="order",
        hold_until=timezone.now() + timedelta(days=1),
    ).entry
    with pytest.raises(LoyaltyError, match="A reason is required."):
        entry_reject(entry=entry, actor=manager, reason="")
    entry_reject(entry=entry, actor=manager, reason="Fraud")
    entry.refresh_from_db()
    assert entry.status == EntryStatus.REJECTED and entry.status_changed_by == manager
    assert figures(member) == (0, 0, 0)


def test_reverse_active_entry_posts_a_linked_reversal_once(tiers, manager):
    member = MemberFactory()
    credit = points_adjust(member=member, points=600, reason="Conversion", actor=manager).entry
    reversal = entry_reverse(entry=credit, reason="Wrong member", actor=manager).entry
    assert (reversal.kind, reversal.points, reversal.reverses) == (EntryKind.REVERSAL, -600, credit)
    assert figures(member) == (0, 0, 0)
    assert member.tier.name == "Bronze"
    with pytest.raises(LoyaltyError, match=f"Entry #{credit.pk} was already reversed by entry #{reversal.pk}."):
        entry_reverse(entry=credit, reason="Again", actor=manager)


def test_reverse_refuses_when_points_already_spent(tiers, manager):
    member = MemberFactory()
    credit = points_adjust(member=member, points=300, reason="Conversion", actor=manager).entry
    points_adjust(member=member, points=-180, reason="Spent", actor=manager)
    with pytest.raises(LoyaltyError, match="Cannot reverse: 300 points were credited but only 120 are available."):
        entry_reverse(entry=credit, reason="Wrong", actor=manager)
    assert figures(member)[0] == 120


def test_reverse_under_cap_with_nothing_available_records_a_shortfall_and_counts_as_reversed(tiers, manager):
    member = MemberFactory()
    credit = points_adjust(member=member, points=300, reason="Conversion", actor=manager).entry
    points_adjust(member=member, points=-300, reason="Spent", actor=manager)
    result = entry_reverse(entry=credit, reason="Refund", actor=manager, policy="cap")
    assert result.entry is None and result.shortfall == 300
    assert Shortfall.objects.get().reversal_of == credit
    with pytest.raises(LoyaltyError, match="already reversed"):
        entry_reverse(entry=credit, reason="Again", actor=manager, policy="cap")


def test_reverse_pending_entry_rejects_it(tiers, manager, system):
    member = MemberFactory()
    entry = points_earn(
        member=member,
        points=90,
        reason="Order",
        actor=system,
        source="order",
        hold_until=timezone.now() + timedelta(days=3),
    ).entry
    result = entry_reverse(entry=entry, reason="Cancelled", actor=manager)
    assert result.entry.status == EntryStatus.REJECTED
    assert figures(member) == (0, 0, 0)


def test_a_reversal_or_a_rejected_entry_cannot_be_reversed(tiers, manager, system):
    member = MemberFactory()
    credit = points_adjust(member=member, points=10, reason="x", actor=manager).entry
    reversal = entry_reverse(entry=credit, reason="y", actor=manager).entry
    with pytest.raises(LoyaltyError, match="is itself a reversal"):
        entry_reverse(entry=reversal, reason="z", actor=manager)
    pending = points_earn(
        member=member,
        points=5,
        reason="o",
        actor=system,
        source="order",
        hold_until=timezone.now() + timedelta(days=1),
    ).entry
    entry_reject(entry=pending, actor=manager, reason="no")
    with pytest.raises(LoyaltyError, match="was rejected: there is nothing to reverse"):
        entry_reverse(entry=pending, reason="z", actor=manager)


def test_reversal_of_a_redemption_gives_points_back_without_touching_lifetime(tiers, manager):
    member = MemberFactory()
    points_adjust(member=member, points=600, reason="Start", actor=manager)
    coupon = reward_give(member=member, reward=RewardFactory(points_cost=500), deduct_points=True, actor=manager)
    entry_reverse(entry=coupon.redemption_entry, reason="Coupon not used", actor=manager)
    assert figures(member) == (600, 0, 600)


def test_give_reward_with_deduction_posts_a_redemption_and_keeps_lifetime_and_tier(tiers, manager):
    member = MemberFactory()
    points_adjust(member=member, points=600, reason="Start", actor=manager)
    coupon = reward_give(
        member=member, reward=RewardFactory(points_cost=500, coupon_prefix="FIVE"), deduct_points=True, actor=manager
    )
    assert coupon.code.startswith("FIVE-") and len(coupon.code) == 15
    assert coupon.redemption_entry.points == -500 and not coupon.redemption_entry.counts_toward_lifetime
    assert figures(member) == (100, 0, 600)
    assert member.tier.name == "Silver"


def test_give_reward_free_touches_no_points(tiers, manager):
    member = MemberFactory()
    coupon = reward_give(member=member, reward=RewardFactory(points_cost=500), deduct_points=False, actor=manager)
    assert coupon.redemption_entry is None and coupon.points_spent == 0
    assert figures(member) == (0, 0, 0)


def test_give_reward_refused_when_points_are_short(tiers, manager):
    member = MemberFactory(email="bo@shop.example")
    points_adjust(member=member, points=100, reason="Start", actor=manager)
    reward = RewardFactory(name="Free shipping", points_cost=300)
    with pytest.raises(LoyaltyError, match="Cannot give Free shipping for 300 points: bo@shop.example has only 100"):
        reward_give(member=member, reward=reward, deduct_points=True, actor=manager)
    assert not Coupon.objects.exists()


def test_give_reward_twice_with_the_same_key_gives_one_coupon(tiers, manager):
    member = MemberFactory()
    points_adjust(member=member, points=1000, reason="Start", actor=manager)
    reward = RewardFactory(points_cost=300)
    first = reward_give(member=member, reward=reward, deduct_points=True, actor=manager, idempotency_key="form:1")
    second = reward_give(member=member, reward=reward, deduct_points=True, actor=manager, idempotency_key="form:1")
    assert first == second and Coupon.objects.count() == 1
    assert figures(member)[0] == 700


def test_inactive_reward_is_refused(tiers, manager):
    member = MemberFactory()
    reward = RewardFactory(name="Old mug", active=False)
    with pytest.raises(LoyaltyError, match="Old mug is not an active reward."):
        reward_give(member=member, reward=reward, deduct_points=False, actor=manager)


def test_partial_take_back_never_takes_more_than_was_earned(tiers, system):
    member = MemberFactory()
    earning = points_earn(member=member, points=100, reason="Order", actor=system, source="order").entry
    first = entry_take_back(entry=earning, points=60, reason="Refund 1", actor=system, idempotency_key="refund:1")
    second = entry_take_back(entry=earning, points=60, reason="Refund 2", actor=system, idempotency_key="refund:2")
    again = entry_take_back(entry=earning, points=60, reason="Refund 2", actor=system, idempotency_key="refund:2")
    assert (first.entry.points, second.entry.points, again.already_applied) == (-60, -40, True)
    assert figures(member) == (0, 0, 0)
    with pytest.raises(LoyaltyError, match="was already taken back in full"):
        entry_reverse(entry=earning, reason="Cancel", actor=system)


def test_take_back_during_the_hold_stays_pending_and_goes_with_the_earning(tiers, manager, system):
    member = MemberFactory()
    earning = points_earn(
        member=member,
        points=100,
        reason="Order",
        actor=system,
        source="order",
        hold_until=timezone.now() + timedelta(days=5),
    ).entry
    take_back = entry_take_back(entry=earning, points=30, reason="Refund", actor=system, idempotency_key="r:1").entry
    assert take_back.status == EntryStatus.PENDING
    assert figures(member) == (0, 70, 0)
    entry_reverse(entry=earning, reason="Cancelled", actor=system)
    take_back.refresh_from_db()
    assert take_back.status == EntryStatus.REJECTED
    assert figures(member) == (0, 0, 0)


def test_release_job_makes_matured_pending_points_available(tiers, system):
    from loyalty.services import pending_release_matured

    member = MemberFactory()
    soon = points_earn(
        member=member,
        points=600,
        reason="Old order",
        actor=system,
        source="order",
        hold_until=timezone.now() + timedelta(seconds=30),
    ).entry
    later = points_earn(
        member=member,
        points=40,
        reason="New order",
        actor=system,
        source="order",
        hold_until=timezone.now() + timedelta(days=10),
    ).entry
    result = pending_release_matured(now=timezone.now() + timedelta(minutes=1))
    assert result.posted == 1
    soon.refresh_from_db()
    later.refresh_from_db()
    assert (soon.status, later.status) == (EntryStatus.ACTIVE, EntryStatus.PENDING)
    assert figures(member) == (600, 40, 600)
    assert member.tier.name == "Silver"
