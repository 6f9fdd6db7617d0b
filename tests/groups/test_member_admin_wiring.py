"""What the member admin offers from the groups and tokens areas: the member's tokens on their page, the filter by
group, the "issue a reward token" action."""

import pytest

from loyalty.models import AccountFilter, CustomerGroup, RewardToken
from loyalty.services.tokens import token_issue
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


def test_member_page_shows_the_members_tokens(client, manager, tiers):
    member = MemberFactory(email="ref@x.example")
    token_issue(member=member, actor=manager, token="LEAD-77")
    client.force_login(manager)
    page = client.get(f"/admin/loyalty/member/{member.pk}/change/")
    assert page.status_code == 200
    assert "LEAD-77" in page.content.decode()


def test_members_list_filters_by_group(client, manager, tiers):
    MemberFactory(email="guest@x.example", signed_up_at=None)
    MemberFactory(email="account@x.example")
    group = CustomerGroup.objects.create(name="Guests", account=AccountFilter.GUEST)
    client.force_login(manager)
    page = client.get("/admin/loyalty/member/", {"group": group.pk})
    text = page.content.decode()
    assert page.status_code == 200
    assert "guest@x.example" in text and "account@x.example" not in text


def test_issue_tokens_from_the_members_list(client, manager, tiers):
    members = [MemberFactory(email=f"m{i}@x.example") for i in range(2)]
    client.force_login(manager)
    done = client.post(
        "/admin/loyalty/member/",
        {"action": "issue_reward_tokens", "_selected_action": [m.pk for m in members]},
        follow=True,
    )
    assert "Issued 2 reward tokens." in done.content.decode()
    assert RewardToken.objects.filter(member__in=members).count() == 2
