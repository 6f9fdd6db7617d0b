"""The database itself keeps the ledger append-only and its links unique, whoever writes to it."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.utils import DatabaseError

from loyalty.models import EntryKind, LedgerEntry, Member
from loyalty.services import entry_reverse, points_adjust
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


def _credit(manager, points=100):
    return points_adjust(member=MemberFactory(), points=points, reason="Start", actor=manager).entry


def test_zero_points_entry_is_refused_by_the_database(tiers, manager):
    member = MemberFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            member=member, points=0, kind=EntryKind.ADJUSTMENT, counts_toward_lifetime=True, reason="x", source="admin"
        )


def test_unknown_kind_and_status_are_refused_by_the_database(tiers, manager):
    member = MemberFactory()
    for bad in ({"kind": "gift"}, {"status": "maybe"}):
        fields = {"kind": EntryKind.ADJUSTMENT, "status": "active", **bad}
        with pytest.raises(IntegrityError), transaction.atomic():
            LedgerEntry.objects.create(
                member=member, points=5, counts_toward_lifetime=True, reason="x", source="admin", **fields
            )


def test_an_entry_cannot_be_reversed_twice_even_bypassing_the_service(tiers, manager):
    entry = _credit(manager)
    entry_reverse(entry=entry, reason="once", actor=manager)
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            member=entry.member,
            points=-100,
            kind=EntryKind.REVERSAL,
            counts_toward_lifetime=True,
            reason="twice",
            source="admin",
            reverses=entry,
        )


def test_duplicate_idempotency_key_is_refused_by_the_database(tiers, manager):
    member = MemberFactory()
    points_adjust(member=member, points=5, reason="x", actor=manager, idempotency_key="dup")
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            member=member,
            points=5,
            kind=EntryKind.ADJUSTMENT,
            counts_toward_lifetime=True,
            reason="x",
            source="admin",
            idempotency_key="dup",
        )


def test_a_member_with_entries_cannot_be_deleted(tiers, manager):
    from django.db.models import ProtectedError

    entry = _credit(manager)
    with pytest.raises(ProtectedError):
        Member.objects.filter(pk=entry.member_id).delete()


@pytest.mark.postgres
def test_trigger_refuses_raw_update_of_points(tiers, manager):
    entry = _credit(manager)
    with pytest.raises(DatabaseError, match="append-only: UPDATE"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("UPDATE loyalty_ledgerentry SET points = 999 WHERE id = %s", [entry.pk])
    entry.refresh_from_db()
    assert entry.points == 100


@pytest.mark.postgres
def test_trigger_refuses_raw_delete(tiers, manager):
    entry = _credit(manager)
    with pytest.raises(DatabaseError, match="append-only: DELETE"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("DELETE FROM loyalty_ledgerentry WHERE id = %s", [entry.pk])
    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


@pytest.mark.postgres
def test_trigger_refuses_moving_an_active_entry_back_to_pending(tiers, manager):
    entry = _credit(manager)
    refused = pytest.raises(DatabaseError, match="only a pending entry may move")
    with refused, transaction.atomic(), connection.cursor() as cur:
        cur.execute("UPDATE loyalty_ledgerentry SET status = 'pending' WHERE id = %s", [entry.pk])


@pytest.mark.postgres
def test_trigger_lets_a_pending_entry_move_its_status_only(tiers, manager, system):
    from datetime import timedelta

    from django.utils import timezone

    from loyalty.services import points_earn

    entry = points_earn(
        member=MemberFactory(),
        points=10,
        reason="o",
        actor=system,
        source="order",
        hold_until=timezone.now() + timedelta(days=1),
    ).entry
    refused = pytest.raises(DatabaseError, match=rf"ledger entries are append-only: UPDATE of entry {entry.pk} refused")
    with refused, transaction.atomic(), connection.cursor() as cur:
        cur.execute("UPDATE loyalty_ledgerentry SET status = 'active', points = 11 WHERE id = %s", [entry.pk])
    with connection.cursor() as cur:
        cur.execute("UPDATE loyalty_ledgerentry SET status = 'rejected' WHERE id = %s", [entry.pk])
    # Keep the cached figures true to the ledger for the closing reconcile check.
    Member.objects.filter(pk=entry.member_id).update(pending_points=0)
    entry.refresh_from_db()
    assert entry.status == "rejected"
