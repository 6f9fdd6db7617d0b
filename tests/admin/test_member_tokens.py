"""A member's reward tokens on their page, and issuing tokens from the members list."""

import pytest

from loyalty.models import EarnRuleKind, RewardToken
from loyalty.services.tokens import token_issue
from tests.factories import EarnRuleFactory, MemberFactory

pytestmark = pytest.mark.django_db


def test_member_page_lists_the_members_reward_tokens(client, manager, tiers):
    member = MemberFactory(email="ref@x.example")
    token_issue(member=member, actor=manager, token="LEAD-77")
    client.force_login(manager)
    page = client.get(f"/admin/loyalty/member/{member.pk}/change/").content.decode()
    assert 'id="member-reward-tokens"' in page and "LEAD-77" in page


def test_issue_a_token_to_each_selected_member_from_the_list(client, manager, tiers):
    EarnRuleFactory(name="Closed referral", kind=EarnRuleKind.CONVERSION, points=300, points_per_currency_unit=None)
    members = [MemberFactory(), MemberFactory()]
    client.force_login(manager)
    response = client.post(
        "/admin/loyalty/member/",
        {"action": "issue_reward_tokens", "_selected_action": [m.pk for m in members]},
        follow=True,
    )
    assert response.status_code == 200
    assert sorted(RewardToken.objects.values_list("member_id", flat=True)) == sorted(m.pk for m in members)
