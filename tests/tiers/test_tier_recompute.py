"""Changing tier thresholds moves members to the tier their lifetime points reach now, with the move recorded."""

import pytest

from loyalty.services import points_adjust, tiers_recompute_all
from tests.factories import MemberFactory, TierFactory
from tiers.models import Tier

pytestmark = pytest.mark.django_db


def test_lowering_a_threshold_moves_members_up_and_records_why(tiers, manager):
    member = MemberFactory()
    points_adjust(member=member, points=450, reason="Orders", actor=manager)
    untouched = MemberFactory()
    Tier.objects.filter(name="Silver").update(threshold=400)
    assert tiers_recompute_all() == (1, 0)
    member.refresh_from_db()
    untouched.refresh_from_db()
    assert member.tier.name == "Silver" and untouched.tier.name == "Bronze"
    change = member.tier_changes.first()
    assert (change.from_tier.name, change.to_tier.name, change.reason) == (
        "Bronze",
        "Silver",
        "Tier thresholds changed",
    )
    assert tiers_recompute_all() == (0, 0)


def test_a_new_top_tier_takes_the_members_who_reach_it(tiers, manager):
    member = MemberFactory()
    points_adjust(member=member, points=6000, reason="Big spender", actor=manager)
    TierFactory(name="Platinum", threshold=5000)
    tiers_recompute_all()
    member.refresh_from_db()
    assert member.tier.name == "Platinum"
