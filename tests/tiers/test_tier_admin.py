"""Saving or deleting a tier in the admin shows how many members move first, then moves them in the background."""

import pytest

from loyalty.actors import SystemActor
from loyalty.services import points_adjust
from tests.admin.conftest import member_with
from tiers.models import Tier, TierChange

pytestmark = pytest.mark.django_db
TIERS_URL = "/admin/tiers/tier/"


@pytest.fixture
def members(tiers):
    """Ann at 450 lifetime points (Bronze), Bob at 600 (Silver), Cy at 2,500 (Gold)."""
    return {name: member_with(points) for name, points in (("ann", 450), ("bob", 600), ("cy", 2500))}


def tier_of(member):
    member.refresh_from_db()
    return member.tier.name if member.tier else None


def test_lowering_a_threshold_shows_the_impact_then_moves_members_when_confirmed(
    manager_client, members, django_capture_on_commit_callbacks
):
    silver = Tier.objects.get(name="Silver")
    form = {"name": "Silver", "threshold": "400", "description": "", "_save": "Save"}
    preview = manager_client.post(f"{TIERS_URL}{silver.pk}/change/", form)
    assert preview.status_code == 200
    assert "moves 1 member up and 0 down" in preview.content.decode()
    silver.refresh_from_db()
    assert silver.threshold == 500 and tier_of(members["ann"]) == "Bronze"  # nothing saved yet

    with django_capture_on_commit_callbacks(execute=True):
        done = manager_client.post(f"{TIERS_URL}{silver.pk}/change/", {**form, "_tier_impact_seen": "yes"})
    assert done.status_code == 302
    silver.refresh_from_db()
    assert silver.threshold == 400
    assert (tier_of(members["ann"]), tier_of(members["bob"]), tier_of(members["cy"])) == ("Silver", "Silver", "Gold")
    change = TierChange.objects.filter(member=members["ann"]).latest("id")
    assert (change.from_tier.name, change.to_tier.name) == ("Bronze", "Silver")
    assert change.reason == "Tier Silver changed from 500 to 400 points"


def test_a_new_tier_moves_the_members_who_reach_it(manager_client, members, django_capture_on_commit_callbacks):
    form = {"name": "Platinum", "threshold": "2000", "description": ""}
    preview = manager_client.post(f"{TIERS_URL}add/", {**form, "threshold": "2400"})
    assert "moves 1 member up and 0 down" in preview.content.decode()
    assert not Tier.objects.filter(name="Platinum").exists()
    with django_capture_on_commit_callbacks(execute=True):
        manager_client.post(f"{TIERS_URL}add/", {**form, "threshold": "2400", "_tier_impact_seen": "yes"})
    assert tier_of(members["cy"]) == "Platinum"


def test_a_threshold_taken_by_another_tier_is_a_field_error_not_a_preview(manager_client, members):
    silver = Tier.objects.get(name="Silver")
    page = manager_client.post(f"{TIERS_URL}{silver.pk}/change/", {"name": "Silver", "threshold": "2000"})
    assert page.status_code == 200 and "errornote" in page.content.decode()
    assert "tier-impact" not in page.content.decode()


def test_deleting_a_tier_retires_it_and_moves_its_members_down_with_history_kept(
    manager_client, members, django_capture_on_commit_callbacks
):
    silver = Tier.objects.get(name="Silver")
    page = manager_client.get(f"{TIERS_URL}{silver.pk}/delete/")
    assert "Retiring Silver moves 0 members up and 1 down" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        manager_client.post(f"{TIERS_URL}{silver.pk}/delete/", {"post": "yes"})
    silver.refresh_from_db()
    assert silver.retired and tier_of(members["bob"]) == "Bronze"
    assert TierChange.objects.filter(member=members["bob"], to_tier=silver).exists()  # "why was she Silver?"
    # Points posted later follow the tiers in use: 100 more takes Bob to 700, still Bronze.
    points_adjust(member=members["bob"], points=100, reason="Later", actor=SystemActor("tests"))
    assert tier_of(members["bob"]) == "Bronze"


def test_a_support_agent_cannot_change_tiers(agent_client, members):
    silver = Tier.objects.get(name="Silver")
    refused = agent_client.post(f"{TIERS_URL}{silver.pk}/change/", {"name": "Silver", "threshold": "1"})
    assert refused.status_code == 403
    silver.refresh_from_db()
    assert silver.threshold == 500
