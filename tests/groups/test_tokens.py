"""Reward tokens: issued to members, closed once (the conversion rule's points), rejected."""

from decimal import Decimal

import pytest

from loyalty.errors import LoyaltyError
from loyalty.models import EarnRuleKind, EntryStatus, LedgerEntry, Member, RewardToken, TokenStatus
from loyalty.services.tokens import TokenRow, token_close, token_issue, token_reject, tokens_close_bulk
from tests.factories import EarnRuleFactory, MemberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def rule(db):
    return EarnRuleFactory(
        name="Closed referral", kind=EarnRuleKind.CONVERSION, points=300, points_per_currency_unit=None, hold_days=0
    )


@pytest.fixture
def member(tiers):
    return MemberFactory(email="ref@x.example")


def test_issue_makes_a_unique_code(member, manager, rule):
    first = token_issue(member=member, actor=manager)
    second = token_issue(member=member, actor=manager)
    assert first.token != second.token and len(first.token) == 12
    assert first.status == TokenStatus.ISSUED
    with pytest.raises(LoyaltyError, match="already exists"):
        token_issue(member=member, actor=manager, token=first.token)


def test_close_credits_the_conversion_points_once(member, manager, rule):
    token = token_issue(member=member, actor=manager, token="LEAD-1")
    result = token_close(token="LEAD-1", actor=manager)
    assert result.points == 300
    again = token_close(token="LEAD-1", actor=manager)
    assert again.already_applied and again.points == 0
    member.refresh_from_db()
    assert member.available_points == 300
    token.refresh_from_db()
    assert token.status == TokenStatus.CLOSED
    assert LedgerEntry.objects.get(idempotency_key="token:LEAD-1").earn_rule == rule


def test_close_by_sale_amount_with_a_rate(member, manager, rule):
    rule.points_per_currency_unit = Decimal("2")
    rule.save()
    token_issue(member=member, actor=manager, token="LEAD-2")
    assert token_close(token="LEAD-2", actor=manager, amount=Decimal("49.99")).points == 99


def test_close_with_hold_days_is_pending_then_reject_rejects_it(member, manager, rule):
    rule.hold_days = 30
    rule.save()
    token_issue(member=member, actor=manager, token="LEAD-3")
    token_close(token="LEAD-3", actor=manager)
    member.refresh_from_db()
    assert (member.available_points, member.pending_points) == (0, 300)
    token_reject(token="LEAD-3", actor=manager, reason="Lead returned the goods")
    member.refresh_from_db()
    assert (member.available_points, member.pending_points) == (0, 0)
    assert LedgerEntry.objects.get(idempotency_key="token:LEAD-3").status == EntryStatus.REJECTED
    assert RewardToken.objects.get(token="LEAD-3").status == TokenStatus.REJECTED


def test_reject_refuses_points_already_available(member, manager, rule):
    token_issue(member=member, actor=manager, token="LEAD-4")
    token_close(token="LEAD-4", actor=manager)
    with pytest.raises(LoyaltyError, match="already available: reverse entry"):
        token_reject(token="LEAD-4", actor=manager)
    assert Member.objects.get(pk=member.pk).available_points == 300


def test_a_rejected_token_is_never_credited(member, manager, rule):
    token_issue(member=member, actor=manager, token="LEAD-5")
    token_reject(token="LEAD-5", actor=manager)
    with pytest.raises(LoyaltyError, match="was rejected"):
        token_close(token="LEAD-5", actor=manager)
    assert Member.objects.get(pk=member.pk).available_points == 0


def test_close_checks_token_email_and_rule(member, manager):
    with pytest.raises(LoyaltyError, match="does not exist"):
        token_close(token="NOPE", actor=manager)
    token_issue(member=member, actor=manager, token="LEAD-6")
    with pytest.raises(LoyaltyError, match="no active conversion"):
        token_close(token="LEAD-6", actor=manager)
    EarnRuleFactory(name="Referral", kind=EarnRuleKind.CONVERSION, points=50, points_per_currency_unit=None)
    with pytest.raises(LoyaltyError, match="belongs to another member"):
        token_close(token="LEAD-6", actor=manager, email="someone@else.example")
    assert token_close(token="LEAD-6", actor=manager, email="REF@x.example").points == 50
    assert RewardToken.objects.get(token="LEAD-6").status == TokenStatus.CLOSED


def test_bulk_close_gives_the_same_ledger_as_closing_one_by_one(tiers, manager, rule, system):
    one = [MemberFactory(email=f"one{i}@x.example") for i in range(3)]
    bulk = [MemberFactory(email=f"bulk{i}@x.example") for i in range(3)]
    for i in range(3):
        token_issue(member=one[i], actor=manager, token=f"ONE-{i}")
        token_issue(member=bulk[i], actor=manager, token=f"BULK-{i}")
        token_close(token=f"ONE-{i}", actor=system, source="import")
    rows = [TokenRow(row=i + 2, token=f"BULK-{i}") for i in range(3)]
    rows += [TokenRow(row=5, token="BULK-0"), TokenRow(row=6, token="MISSING")]
    result, problems = tokens_close_bulk(rows=rows, actor=system, source="import")
    assert result.posted == 3
    assert problems == [(6, "Token MISSING does not exist.")]
    assert sorted(Member.objects.filter(email__startswith="one").values_list("available_points", flat=True)) == sorted(
        Member.objects.filter(email__startswith="bulk").values_list("available_points", flat=True)
    )
    again, _problems = tokens_close_bulk(rows=rows[:3], actor=system, source="import")
    assert again.posted == 0
    assert RewardToken.objects.filter(status=TokenStatus.CLOSED).count() == 6


def test_admin_issue_close_and_reject(member, client, manager, rule):
    client.force_login(manager)
    assert client.get("/admin/loyalty/rewardtoken/add/").status_code == 302
    bad = client.post("/admin/loyalty/rewardtoken/issue/", {"emails": "ghost@x.example"})
    assert "No member has these emails: ghost@x.example" in bad.content.decode()
    done = client.post("/admin/loyalty/rewardtoken/issue/", {"emails": "ref@x.example"}, follow=True)
    assert "Issued 1 reward token." in done.content.decode()
    token = RewardToken.objects.get()
    url = "/admin/loyalty/rewardtoken/"
    confirm = client.post(url, {"action": "close_tokens", "_selected_action": [token.pk]})
    assert "Credit the points" in confirm.content.decode()
    closed = client.post(
        url, {"action": "close_tokens", "_selected_action": [token.pk], "post": "yes", "amount": ""}, follow=True
    )
    assert "Credited 1 token: +300 points." in closed.content.decode()
    refused = client.post(
        url, {"action": "reject_tokens", "_selected_action": [token.pk], "post": "yes", "reason": "Fraud"}, follow=True
    )
    assert "already available: reverse entry" in refused.content.decode()
    assert Member.objects.get(pk=member.pk).available_points == 300
