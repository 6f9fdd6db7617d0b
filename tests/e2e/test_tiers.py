"""A program manager lowers a tier's threshold in the browser: the impact first, then the members move."""

import pytest

from loyalty.actors import SystemActor
from loyalty.models import Member, ProgramSettings
from loyalty.services import points_adjust
from tests.e2e.conftest import sign_in
from tests.factories import MemberFactory, TierFactory, UserFactory
from tiers.models import Tier

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_threshold_change_is_previewed_confirmed_and_moves_the_member(page, live_server, roles, shot):
    TierFactory(name="Bronze", threshold=0)
    silver = TierFactory(name="Silver", threshold=500)
    ProgramSettings.load()
    ann = MemberFactory(email="ann@shop.example")
    points_adjust(member=ann, points=450, reason="Orders", actor=SystemActor("tests"))
    manager = UserFactory(username="manager-max")
    manager.groups.add(roles["manager"])

    sign_in(page, live_server, "manager-max")
    page.goto(f"{live_server.url}/admin/tiers/tier/{silver.pk}/change/")
    page.fill("#id_threshold", "400")
    page.click("input[name=_save]")
    page.wait_for_selector("#tier-impact")
    assert "moves 1 member up and 0 down" in page.inner_text(".tier-impact-summary")
    shot(page, "tiers-01-impact-of-silver-at-400")
    assert Tier.objects.get(pk=silver.pk).threshold == 500  # nothing changed before the confirmation

    page.click("#tier-impact input[type=submit]")
    page.wait_for_selector(".messagelist")
    assert Tier.objects.get(pk=silver.pk).threshold == 400
    page.goto(f"{live_server.url}/admin/loyalty/member/{ann.pk}/change/")
    page.wait_for_selector("#program-activity")
    shot(page, "tiers-02-member-now-silver")
    assert "Silver" in page.inner_text("#content")
    assert Member.objects.get(pk=ann.pk).tier.name == "Silver"
