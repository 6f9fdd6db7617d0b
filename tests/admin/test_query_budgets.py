"""Query budgets: the members list and a member's page cost the same number of queries however much data they show."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from loyalty.admin.members import MemberAdmin
from loyalty.services import Posting, entries_post_bulk
from tests.admin.conftest import MEMBERS_URL, member_with
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db
BUDGET = 15


def queries_of(client, url):
    client.get(url)  # the first visit fills per-process caches (content types, templates)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


def test_members_list_runs_the_same_queries_for_1_or_100_rows(agent_client, tiers, monkeypatch):
    monkeypatch.setattr(MemberAdmin, "list_per_page", 100)
    member_with(600)
    one = queries_of(agent_client, MEMBERS_URL)
    for _ in range(99):
        member_with(600)
    hundred = queries_of(agent_client, MEMBERS_URL)
    page = agent_client.get(MEMBERS_URL)
    assert len(page.context["cl"].result_list) == 100
    assert one == hundred <= BUDGET


def test_member_page_runs_the_same_queries_for_1_or_1000_entries(agent_client, tiers, system, reward):
    from loyalty.services import reward_give

    ann = MemberFactory()
    entries_post_bulk(postings=[Posting(ann.pk, 700, "first")], actor=system, source="system")
    reward_give(member=ann, reward=reward, deduct_points=True, actor=system)
    url = f"{MEMBERS_URL}{ann.pk}/change/"
    one = queries_of(agent_client, url)
    entries_post_bulk(postings=[Posting(ann.pk, 5, f"credit {i}") for i in range(1000)], actor=system, source="system")
    thousand = queries_of(agent_client, url)
    assert one == thousand <= BUDGET
    assert "credit 999" in agent_client.get(url).content.decode()


def test_ledger_list_runs_the_same_queries_for_1_or_100_rows(agent_client, system, monkeypatch):
    from loyalty.admin.entries import LedgerEntryAdmin

    monkeypatch.setattr(LedgerEntryAdmin, "list_per_page", 100)
    ann = member_with(10)
    one = queries_of(agent_client, "/admin/loyalty/ledgerentry/")
    entries_post_bulk(postings=[Posting(ann.pk, 1, f"c{i}") for i in range(99)], actor=system, source="system")
    hundred = queries_of(agent_client, "/admin/loyalty/ledgerentry/")
    assert one == hundred <= BUDGET
