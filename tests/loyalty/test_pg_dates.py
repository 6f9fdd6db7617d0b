"""A timestamp PostgreSQL holds and Python cannot (year 10000 in UTC, or BC) is read as the nearest edge Python holds,
so the pages, searches and exports that read such a row answer instead of failing."""

import pytest
from django.db import connection

from loyalty.models import Member
from loyalty.pg_dates import EARLIEST, LATEST
from tests.factories import MemberFactory

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def test_years_past_9999_and_before_1_read_as_the_edges_and_others_exactly():
    member = MemberFactory()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE loyalty_member SET signed_up_at = '9999-12-31T23:59:59-14:00' WHERE id = %s", [member.pk]
        )
        cursor.execute("SELECT '0001-01-01 00:00+14'::timestamptz, '2024-05-01 10:00+00'::timestamptz")
        before_year_1, ordinary = cursor.fetchone()
    assert Member.objects.get(pk=member.pk).signed_up_at == LATEST
    assert before_year_1 == EARLIEST
    assert ordinary.isoformat() == "2024-05-01T10:00:00+00:00"


def test_the_members_list_page_and_export_answer_with_such_a_row(client, manager, tiers):
    member = MemberFactory(email="far@future.example")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE loyalty_member SET signed_up_at = '9999-12-31T23:59:59-14:00' WHERE id = %s", [member.pk]
        )
    client.force_login(manager)
    assert client.get("/admin/loyalty/member/?q=far@future").status_code == 200
    assert client.get(f"/admin/loyalty/member/{member.pk}/change/").status_code == 200
    export = client.post("/admin/loyalty/member/", {"action": "export_members_csv", "_selected_action": [member.pk]})
    assert b"far@future.example" in export.content
