"""'Select all N' on the ledger entries list: the filter goes to a background job, whatever N is."""

import pytest

from loyalty.models import EntryKind, EntryStatus, LedgerEntry
from loyalty.tasks.admin_actions import entries_action_matching
from tests.admin.conftest import ENTRIES_URL, confirm, first_post, member_with, messages_of, pending_entry
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


def select_all(client, query, action, capture, **fields):
    """The first POST with "Select all", then the confirming one, running what it queued as a worker would."""
    url = f"{ENTRIES_URL}?{query}"
    some = LedgerEntry.objects.values_list("pk", flat=True)[:1]
    page = first_post(client, url, action, list(some), select_across="1")
    assert b"every entry matching the list" in page.content
    with capture(execute=True):
        done = confirm(client, url, action, list(some), page, select_across="1", **fields)
    return page, done


def test_approve_all_pending_is_queued_and_approves_every_matching_entry(
    manager_client, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr("loyalty.admin.entries.MAX_ENTRIES_PER_ACTION", 2)  # more entries than a request may post
    ann, bob = MemberFactory(email="ann@shop.example"), MemberFactory(email="bob@shop.example")
    for member, points in ((ann, 100), (ann, 200), (bob, 300)):
        pending_entry(member, points)
    settled = member_with(50, email="cleo@shop.example")
    page, done = select_all(
        manager_client, "status__exact=pending", "approve_pending", django_capture_on_commit_callbacks
    )
    assert "Queued: the pending points of every matching entry will be approved in the background." in messages_of(done)
    ann.refresh_from_db(), bob.refresh_from_db(), settled.refresh_from_db()
    assert (ann.available_points, ann.pending_points) == (300, 0)
    assert (bob.available_points, bob.pending_points) == (300, 0)
    assert settled.available_points == 50
    assert not LedgerEntry.objects.filter(status=EntryStatus.PENDING).exists()


def test_reject_all_of_one_member_leaves_other_members_pending(agent_client, django_capture_on_commit_callbacks):
    ann, bob = MemberFactory(email="ann@shop.example"), MemberFactory(email="bob@shop.example")
    pending_entry(ann, 100), pending_entry(ann, 200), pending_entry(bob, 300)
    query = "q=ann@shop.example&status__exact=pending"
    page, done = select_all(
        agent_client, query, "reject_pending", django_capture_on_commit_callbacks, reason="Orders returned"
    )
    assert any(
        m.startswith("Queued: the pending points of every matching entry will be rejected") for m in messages_of(done)
    )
    ann.refresh_from_db(), bob.refresh_from_db()
    assert (ann.available_points, ann.pending_points) == (0, 0)
    assert bob.pending_points == 300
    rejected = LedgerEntry.objects.filter(member=ann, status=EntryStatus.REJECTED)
    assert rejected.count() == 2


def test_reverse_all_matching_posts_linked_reversals_once(agent_client, django_capture_on_commit_callbacks):
    ann = member_with(400, email="ann@shop.example")
    member_with(250, email="bob@shop.example")
    query = "q=ann@shop.example&kind__exact=adjustment"
    page, done = select_all(
        agent_client, query, "reverse_conversion", django_capture_on_commit_callbacks, reason="Fraudulent leads"
    )
    assert any("will be reversed in the background" in m for m in messages_of(done))
    ann.refresh_from_db()
    assert ann.available_points == 0
    reversal = LedgerEntry.objects.get(member=ann, kind=EntryKind.REVERSAL)
    assert reversal.points == -400 and reversal.reason == "Fraudulent leads"
    # The same job again (a worker lost after it finished) reverses nothing twice.
    entries_action_matching(user_id=done.wsgi_request.user.pk, query=query, action="reverse_conversion", reason="x")
    assert LedgerEntry.objects.filter(kind=EntryKind.REVERSAL).count() == 1


def test_select_all_posts_nothing_before_the_confirming_post(agent_client):
    ann = MemberFactory(email="ann@shop.example")
    entry = pending_entry(ann, 100)
    page = first_post(
        agent_client, f"{ENTRIES_URL}?status__exact=pending", "reject_pending", [entry.pk], select_across="1"
    )
    assert page.status_code == 200 and b"ann@shop.example" in page.content
    entry.refresh_from_db()
    assert entry.status == EntryStatus.PENDING
