"""Reverse, Approve and Reject where the entry is (a member's Program activity), and a preview that tells the truth:
one member's rows computed one after another, each refusal worded as the ledger service will word it."""

import pytest
from django.contrib.auth.models import Permission

from loyalty.actors import SystemActor
from loyalty.models import EntryKind, EntryStatus, LedgerEntry, Member, NegativeBalancePolicy, ProgramSettings
from loyalty.services import entry_reverse, points_adjust, reward_give
from tests.admin.conftest import ENTRIES_URL, MEMBERS_URL, confirm, first_post, member_with, messages_of, pending_entry
from tests.factories import RewardFactory, UserFactory

pytestmark = pytest.mark.django_db
SYSTEM = SystemActor("tests")
ACT_URL = "/admin/loyalty/ledgerentry/act/"


def credit(member, points, reason):
    return points_adjust(member=member, points=points, reason=reason, actor=SYSTEM).entry


def spend(member, points):
    reward_give(member=member, reward=RewardFactory(points_cost=points), deduct_points=True, actor=SYSTEM)


def activity_links(client, member):
    """{entry id: [link labels]} of the member's Program activity."""
    rows = client.get(f"{MEMBERS_URL}{member.pk}/change/").context["activity"]
    return {row["entry"].pk: [label for label, _url in row["links"]] for row in rows}


def test_activity_offers_reverse_on_reversible_entries_and_approve_reject_on_pending_ones(agent_client):
    ann = member_with(0, email="ann@shop.example")
    kept = credit(ann, 300, "Welcome bonus")
    undone = credit(ann, 100, "Duplicate")
    reversal = entry_reverse(entry=undone.pk, reason="Duplicate", actor=SYSTEM).entry
    waiting = pending_entry(ann, 120)
    links = activity_links(agent_client, ann)
    assert links[kept.pk] == ["Reverse"]
    assert links[undone.pk] == [], "an entry reversed already offers nothing"
    assert links[reversal.pk] == [], "a reversal is not reversed again"
    assert links[waiting.pk] == ["Reverse", "Approve", "Reject"]


def test_activity_offers_no_link_the_staff_member_may_not_use(client):
    viewer = UserFactory(username="viewer")
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_member", "view_ledgerentry"]))
    client.force_login(viewer)
    ann = member_with(300, email="ann@shop.example")
    pending_entry(ann, 120)
    assert set(map(tuple, activity_links(client, ann).values())) == {()}
    entry = ann.entries.first()
    refused = client.get(f"{ACT_URL}reverse_conversion/", {"entry": entry.pk})
    assert refused.status_code == 403
    assert "Can reverse a credited entry" in refused.content.decode()


def test_reverse_link_opens_the_actions_page_and_returns_to_the_member(agent_client):
    ann = member_with(0, email="ann@shop.example")
    entry = credit(ann, 250, "Late delivery")
    member_page = f"{MEMBERS_URL}{ann.pk}/change/"
    link = dict(agent_client.get(member_page).context["activity"][0]["links"])["Reverse"]
    page = agent_client.get(link)
    assert page.context["title"] == "Reverse conversion" and "reason" in page.context["form"].fields
    assert [row.cells[6:9] for row in page.context["rows"]] == [["250", "0", "A reversal entry of -250 points."]]
    token = page.context["form"]["action_token"].value()
    done = agent_client.post(link, {"post": "yes", "action_token": token, "reason": "Parcel arrived"}, follow=True)
    assert done.redirect_chain[-1][0] == member_page
    assert "Reversed 1 entry (-250 points)." in messages_of(done)
    assert LedgerEntry.objects.get(reverses=entry).points == -250


def test_approve_link_makes_the_pending_points_available(agent_client):
    ann = member_with(0, email="ann@shop.example")
    waiting = pending_entry(ann, 120)
    link = dict(agent_client.get(f"{MEMBERS_URL}{ann.pk}/change/").context["activity"][0]["links"])["Approve"]
    page = agent_client.get(link)
    assert page.context["rows"][0].cells[6:9] == ["0", "120", "The points become available now."]
    token = page.context["form"]["action_token"].value()
    done = agent_client.post(link, {"post": "yes", "action_token": token}, follow=True)
    assert "Approved 1 pending entry: 120 points now available." in messages_of(done)
    waiting.refresh_from_db()
    assert waiting.status == EntryStatus.ACTIVE


def test_preview_computes_one_members_rows_in_order_and_marks_the_row_that_will_be_refused(agent_client):
    ann = member_with(0, email="ann@shop.example")
    welcome = credit(ann, 300, "Welcome bonus")
    late = credit(ann, 200, "Late delivery")
    spend(ann, 150)  # 350 available: the first reversal leaves 50, too few for the second
    page = first_post(agent_client, ENTRIES_URL, "reverse_conversion", [late.pk, welcome.pk])
    first, second = page.context["rows"]
    assert first.cells[0] == f"#{welcome.pk}" and first.cells[6:8] == ["350", "50"] and not first.css
    refusal = "Cannot reverse: 200 points were credited but only 50 are available."
    assert second.cells[0] == f"#{late.pk}" and second.cells[6:9] == ["50", "50", refusal]
    assert second.css == "refused"
    assert "1 will be refused (marked below)" in page.context["summary"]

    done = confirm(agent_client, ENTRIES_URL, "reverse_conversion", [late.pk, welcome.pk], page, reason="Mistake")
    assert f"Refused 1: #{late.pk} (ann@shop.example): {refusal}" in messages_of(done)
    assert Member.objects.get(pk=ann.pk).available_points == 50


def test_preview_under_cap_says_what_is_taken_and_what_becomes_a_shortfall(agent_client):
    settings = ProgramSettings.load()
    settings.negative_balance_policy = NegativeBalancePolicy.CAP
    settings.save()
    ann = member_with(0, email="ann@shop.example")
    bonus = credit(ann, 300, "Welcome bonus")
    spend(ann, 200)
    page = first_post(agent_client, ENTRIES_URL, "reverse_conversion", [bonus.pk])
    expected = "A reversal entry of -100 points; 200 could not be taken (recorded as a shortfall)."
    assert page.context["rows"][0].cells[6:9] == ["100", "0", expected]


def test_preview_words_entries_the_service_refuses(agent_client):
    ann = member_with(0, email="ann@shop.example")
    active = credit(ann, 300, "Welcome bonus")
    reversal = entry_reverse(entry=credit(ann, 50, "Oops").pk, reason="Oops", actor=SYSTEM).entry
    approve = first_post(agent_client, ENTRIES_URL, "approve_pending", [active.pk])
    assert approve.context["rows"][0].cells[8] == f"Entry #{active.pk} is active, not pending."
    reverse = first_post(agent_client, ENTRIES_URL, "reverse_conversion", [reversal.pk])
    assert reversal.kind == EntryKind.REVERSAL
    assert reverse.context["rows"][0].cells[8] == (
        f"Entry #{reversal.pk} is itself a reversal; adjust the points instead."
    )


def test_rejecting_a_pending_earning_takes_its_pending_take_back_along_in_the_preview(agent_client):
    from loyalty.services import entry_take_back

    ann = member_with(0, email="ann@shop.example")
    earning = pending_entry(ann, 300)
    take_back = entry_take_back(
        entry=earning.pk, points=100, reason="Partial refund", actor=SYSTEM, idempotency_key="refund:1"
    ).entry
    page = first_post(agent_client, ENTRIES_URL, "reject_pending", [earning.pk, take_back.pk])
    outcomes = [row.cells[8] for row in page.context["rows"]]
    assert outcomes == [
        "Rejected: the pending points never become available.",
        f"Entry #{take_back.pk} is rejected, not pending.",
    ]
    done = confirm(agent_client, ENTRIES_URL, "reject_pending", [earning.pk, take_back.pk], page, reason="Fraud")
    assert f"Entry #{take_back.pk} is rejected, not pending." in " ".join(messages_of(done))


def test_preview_holds_a_support_agent_to_the_per_action_limit_as_the_service_does(agent_client):
    ann = member_with(0, email="ann@shop.example")
    big = credit(ann, 1500, "Wholesale order")  # above the program's support-agent limit of 1,000
    page = first_post(agent_client, ENTRIES_URL, "reverse_conversion", [big.pk])
    refusal = "Changes of more than 1,000 points need a program manager: this one is 1,500 points."
    assert page.context["rows"][0].cells[6:] == ["1,500", "1,500", refusal]
    done = confirm(agent_client, ENTRIES_URL, "reverse_conversion", [big.pk], page, reason="Mistake")
    assert f"Refused 1: #{big.pk} (ann@shop.example): {refusal}" in messages_of(done)
