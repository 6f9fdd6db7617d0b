"""The export actions are on the members, ledger entries and coupons lists and answer with a file."""

import pytest

from loyalty.models import LedgerEntry, Member
from loyalty.services import points_adjust, reward_give
from tests.factories import MemberFactory, RewardFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("url", "action", "model", "header"),
    [
        ("/admin/loyalty/member/", "export_members_csv", Member, "email,customer_id,first_name"),
        ("/admin/loyalty/ledgerentry/", "export_entries_csv", LedgerEntry, "id,created_at,member,points"),
    ],
)
def test_export_selected_rows_from_the_list(client, manager, tiers, url, action, model, header):
    member = MemberFactory(email="exported@shop.example")
    points_adjust(member=member, points=50, reason="Welcome", actor=manager)
    client.force_login(manager)
    ids = list(model.objects.values_list("pk", flat=True))
    response = client.post(url, {"action": action, "_selected_action": ids})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = response.content.decode("utf-8-sig")
    assert text.startswith(header) and "exported@shop.example" in text


def test_export_coupons_as_xlsx(client, manager, tiers):
    member = MemberFactory()
    coupon = reward_give(member=member, reward=RewardFactory(), deduct_points=False, actor=manager)
    client.force_login(manager)
    response = client.post("/admin/loyalty/coupon/", {"action": "export_coupons_xlsx", "_selected_action": [coupon.pk]})
    assert response.status_code == 200
    assert "spreadsheetml" in response["Content-Type"]
