"""Members see what is coming (issue 15): open batches and what expires in 30 days on the member's page; a members
list filter of points expiring within 7 / 30 / 90 days, and its export for reminder emails."""

import csv
import io
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from loyalty.actors import SystemActor
from loyalty.models import PointsBatch, ProgramSettings
from loyalty.services import points_earn
from loyalty.services.members import member_create

pytestmark = pytest.mark.django_db
SYSTEM = SystemActor("member expiry test")


@pytest.fixture
def members(tiers):
    ProgramSettings.load()
    ProgramSettings.objects.filter(pk=1).update(expiry_policy="after_earning", expiry_period=60, expiry_unit="days")
    soon, later = member_create(email="soon@example.com"), member_create(email="later@example.com")
    for member, age in ((soon, 40), (later, 5)):
        entry = points_earn(member=member, points=120, reason="order", actor=SYSTEM, source="order").entry
        PointsBatch.objects.filter(entry=entry).update(earned_at=timezone.now() - timedelta(days=age))
    return soon, later


def test_the_member_page_lists_open_batches_and_what_expires_soon(manager_client, members):
    soon, _later = members
    page = manager_client.get(f"/admin/loyalty/member/{soon.pk}/change/").content.decode()
    assert 'id="member-batches"' in page and 'class="batch-row"' in page
    assert '<span class="figure-expiring">120</span>' in page
    expires = (timezone.localdate() + timedelta(days=20)).isoformat()
    assert expires in page or (timezone.localdate() + timedelta(days=19)).isoformat() in page


def test_the_list_filters_members_by_points_expiring(manager_client, members):
    soon, later = members
    within_30 = manager_client.get("/admin/loyalty/member/", {"expiring": "30"})
    assert [m.email for m in within_30.context["cl"].result_list] == ["soon@example.com"]
    within_90 = manager_client.get("/admin/loyalty/member/", {"expiring": "90"})
    assert {m.email for m in within_90.context["cl"].result_list} == {"soon@example.com", "later@example.com"}
    assert "expiring-export-link" in within_30.content.decode()


def test_the_export_lists_who_to_remind(manager_client, members):
    response = manager_client.get("/admin/loyalty/member/expiring.csv", {"expiring": "30"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["email", "first_name", "last_name", "points_expiring"]
    assert [r[0] for r in rows[1:]] == ["soon@example.com"] and rows[1][3] == "120"


def test_agents_cannot_export_the_reminder_list(support_agent, members):
    client = Client()
    client.force_login(support_agent)
    assert client.get("/admin/loyalty/member/expiring.csv", {"expiring": "30"}).status_code == 403
