"""Admin exports of members, ledger entries and coupons (django-import-export resources), formulae escaped."""

import io

import pytest
from openpyxl import load_workbook

from imports.resources import export_actions, export_response
from loyalty.models import LedgerEntry, Member
from loyalty.services import points_adjust
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


def test_members_csv_export_escapes_formulae(tiers, system):
    member = MemberFactory(email="ann@shop.example", first_name="=HYPERLINK(1)", last_name="-Lee")
    points_adjust(member=member, points=600, reason="+gift", actor=system)
    response = export_response("members", Member.objects.all())
    text = response.content.decode("utf-8-sig")
    lines = text.splitlines()
    assert lines[0].startswith("email,customer_id,first_name,last_name,signed_up_at,available_points")
    assert "ann@shop.example,,'=HYPERLINK(1),'-Lee," in lines[1], "formulae are escaped, numbers are not"
    assert ",600,0,600,Silver," in lines[1]
    assert 'attachment; filename="members-' in response["Content-Disposition"]


def test_entries_xlsx_export(tiers, system):
    points_adjust(
        member=MemberFactory(email="bob@shop.example"), points=-1, reason="@risk", actor=system, policy="allow"
    )
    response = export_response("entries", LedgerEntry.objects.all(), "xlsx")
    sheet = load_workbook(io.BytesIO(response.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:4] == ("id", "created_at", "member", "points")
    assert rows[1][2:4] == ("bob@shop.example", "-1") and rows[1][7] == "'@risk"


def test_export_actions_are_named_for_the_admin():
    assert [a.__name__ for a in export_actions("coupons")] == ["export_coupons_csv", "export_coupons_xlsx"]
