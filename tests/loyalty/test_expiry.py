"""Points that expire (issue 15): earned batches spent earliest first, the policies, the runs and their keys."""

from datetime import date, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from loyalty import rules
from loyalty.actors import SystemActor
from loyalty.errors import LoyaltyError
from loyalty.models import EntryKind, LedgerEntry, PointsBatch, ProgramSettings
from loyalty.selectors import ledger_differences
from loyalty.services import (
    Posting,
    entries_post_bulk,
    entry_approve,
    entry_reverse,
    pending_release_matured,
    points_adjust,
    points_earn,
    reward_give,
)
from loyalty.services.batches import batch_expired
from loyalty.services.expiry import Policy, expiry_impact, points_expire
from loyalty.services.members import member_create
from loyalty.timezones import store_today
from tests.factories import RewardFactory

SYSTEM = SystemActor("expiry test")


def _earn(member, points, **extra):
    return points_earn(member=member, points=points, reason="order", actor=SYSTEM, source="order", **extra).entry


def _age(entry, days):
    """Move a batch's clock back `days` days (as if it had been earned then): batches are not ledger entries."""
    batch = PointsBatch.objects.get(entry=entry)
    PointsBatch.objects.filter(pk=batch.pk).update(earned_at=batch.earned_at - timedelta(days=days))


def _remaining(member):
    """What is left of each of the member's batches, in spending order."""
    member.refresh_from_db()
    spent = rules.batch_spent(batched=member.batched_points, available=member.available_points)
    batches = PointsBatch.objects.filter(member=member).order_by(*rules.BATCH_ORDER)
    return [rules.batch_remaining(through=b.through, points=b.points, spent=spent) for b in batches]


def _policy(policy, period=30, unit="days"):
    ProgramSettings.load()
    ProgramSettings.objects.filter(pk=1).update(expiry_policy=policy, expiry_period=period, expiry_unit=unit)


# ---------------------------------------------------------------------------------------------------------------
# The rulebook


def test_spending_takes_the_earliest_batches_first_and_never_below_zero():
    line = [(100, 100), (150, 50), (180, 30)]  # (through, points): three batches end to end

    def left(spent):
        return [rules.batch_remaining(through=t, points=p, spent=spent) for t, p in line]

    assert left(0) == [100, 50, 30]
    assert left(120) == [0, 30, 30]  # a debit of 120 spanned two batches
    assert left(220) == [0, 0, 0]  # 40 more than the batches hold: a balance below zero, nothing below 0
    # A credit of 50 on a balance of -30 (spent 210 of 180): its batch (180, 230] holds 20, the rest repaid the debt.
    assert rules.batch_remaining(through=230, points=50, spent=rules.batch_spent(batched=230, available=20)) == 20
    # What an expiration's span (ending at 150, 110 long) took of each batch.
    taken = [rules.span_overlap(through=t, points=p, span_end=150, span_points=110) for t, p in line]
    assert taken == [60, 50, 0]


def test_expiry_dates_by_policy():
    day = date(2026, 1, 31)
    assert rules.expires_on(clock_day=day, policy="none", period=3, unit="days") is None
    assert rules.expires_on(clock_day=day, policy="after_earning", period=30, unit="days") == date(2026, 3, 2)
    assert rules.expires_on(clock_day=day, policy="after_earning", period=1, unit="months") == date(2026, 2, 28)
    assert rules.expires_on(clock_day=day, policy="inactivity", period=12, unit="days") == date(2027, 1, 31)
    # The last clock day that has expired by a run agrees with expires_on, month ends included.
    for as_of in (date(2026, 2, 28), date(2026, 3, 1), date(2026, 3, 31)):
        last = rules.last_clock_day(as_of=as_of, policy="after_earning", period=1, unit="months")
        assert rules.expired_by(clock_day=last, as_of=as_of, policy="after_earning", period=1, unit="months")
        assert not rules.expired_by(
            clock_day=last + timedelta(days=1), as_of=as_of, policy="after_earning", period=1, unit="months"
        )


# ---------------------------------------------------------------------------------------------------------------
# Batches on the ledger


@pytest.mark.django_db
def test_a_debit_spanning_several_batches_spends_the_earliest_first(tiers):
    ann = member_create(email="span@example.com")
    for points in (100, 50, 30):
        _earn(ann, points)
    points_adjust(member=ann, points=-120, reason="write-off", actor=SYSTEM)
    assert _remaining(ann) == [0, 30, 30]
    reward_give(member=ann, reward=RewardFactory(points_cost=40), deduct_points=True, actor=SYSTEM)
    assert _remaining(ann) == [0, 0, 20]
    assert ledger_differences() == []


@pytest.mark.django_db
def test_a_balance_below_zero_is_repaid_before_a_new_batch_holds_points(tiers):
    ann = member_create(email="debt@example.com")
    _earn(ann, 50)
    points_adjust(member=ann, points=-80, reason="allowed", actor=SYSTEM, policy="allow")
    _earn(ann, 100)
    ann.refresh_from_db()
    assert ann.available_points == 70 and _remaining(ann) == [0, 70]
    assert ledger_differences() == []


@pytest.mark.django_db
def test_pending_points_open_their_batch_when_they_become_active(tiers):
    ann = member_create(email="hold@example.com")
    pending = _earn(ann, 80, hold_until=timezone.now() + timedelta(days=14))
    assert not PointsBatch.objects.filter(entry=pending).exists()
    entry_approve(entry=pending, actor=SYSTEM)
    pending.refresh_from_db()
    batch = PointsBatch.objects.get(entry=pending)
    assert batch.earned_at == pending.status_changed_at > pending.created_at
    assert _remaining(ann) == [80]


# ---------------------------------------------------------------------------------------------------------------
# Runs


@pytest.mark.django_db
def test_a_period_after_earning_expires_only_the_batches_due_and_never_lowers_the_tier(tiers):
    _policy("after_earning", 30, "days")
    ann = member_create(email="due@example.com")
    old = _earn(ann, 600)  # Silver
    _earn(ann, 40)
    _age(old, 31)
    ann.refresh_from_db()
    tier, lifetime = ann.tier_id, ann.lifetime_points
    assert expiry_impact(Policy.of()) == (1, 600)
    run = points_expire()
    assert (run.members, run.points) == (1, 600)
    ann.refresh_from_db()
    assert (ann.available_points, ann.lifetime_points, ann.tier_id) == (40, lifetime, tier)
    expiration = LedgerEntry.objects.get(kind=EntryKind.EXPIRATION)
    assert expiration.points == -600 and not expiration.counts_toward_lifetime
    assert expiration.idempotency_key == f"expire:{ann.pk}:{store_today().isoformat()}"
    assert _remaining(ann) == [0, 40]
    assert expiration.spent_through == 600 and batch_expired(old.pk) == 600  # all of the old batch, none of the new
    assert batch_expired(LedgerEntry.objects.get(member=ann, points=40).pk) == 0
    assert ledger_differences() == []


@pytest.mark.django_db
def test_a_second_run_of_the_day_posts_nothing(tiers):
    _policy("after_earning", 10, "days")
    ann = member_create(email="twice@example.com")
    _earn(ann, 100)
    later = store_today() + timedelta(days=11)
    assert points_expire(as_of=later).posted == 1
    _age(_earn(ann, 5), 30)
    # The same day again: the member's key for the day is used, nothing more is posted.
    again = points_expire(as_of=later)
    assert (again.posted, again.already_applied) == (0, 1)
    assert LedgerEntry.objects.filter(kind=EntryKind.EXPIRATION).count() == 1


@pytest.mark.django_db
def test_dry_run_counts_and_writes_nothing(tiers):
    _policy("after_earning", 1, "months")
    ann = member_create(email="dry@example.com")
    _earn(ann, 70)
    as_of = store_today() + timedelta(days=40)
    run = points_expire(as_of=as_of, dry_run=True)
    assert (run.members, run.points, run.posted) == (1, 70, 0)
    assert not LedgerEntry.objects.filter(kind=EntryKind.EXPIRATION).exists()


@pytest.mark.django_db
def test_no_policy_expires_nothing(tiers):
    ann = member_create(email="never@example.com")
    _earn(ann, 70)
    run = points_expire(as_of=store_today() + timedelta(days=5000))
    assert (run.members, run.points) == (0, 0)


@pytest.mark.django_db
def test_inactivity_expires_everything_after_months_without_earning_or_redeeming(tiers):
    _policy("inactivity", 2, "months")
    quiet, busy = member_create(email="quiet@example.com"), member_create(email="busy@example.com")
    for member in (quiet, busy):
        _age(_earn(member, 300), 100)
        _age(_earn(member, 200), 90)
    # A recent redemption keeps the busy member active.
    reward_give(member=busy, reward=RewardFactory(points_cost=100), deduct_points=True, actor=SYSTEM)
    run = points_expire()
    assert (run.members, run.points) == (1, 500)
    quiet.refresh_from_db(), busy.refresh_from_db()
    assert (quiet.available_points, busy.available_points) == (0, 400)
    assert ledger_differences() == []


@pytest.mark.django_db
def test_an_expiry_during_a_hold_leaves_the_pending_points_alone(tiers):
    _policy("after_earning", 30, "days")
    ann = member_create(email="waiting@example.com")
    _age(_earn(ann, 100), 40)
    _earn(ann, 60, hold_until=timezone.now() + timedelta(days=1))
    run = points_expire()
    assert run.points == 100
    ann.refresh_from_db()
    assert (ann.available_points, ann.pending_points) == (0, 60)
    pending_release_matured(now=timezone.now() + timedelta(days=2))
    ann.refresh_from_db()
    assert ann.available_points == 60
    # Its clock started at release: the run a month after earning takes nothing of it.
    assert points_expire(as_of=store_today() + timedelta(days=29)).points == 0
    assert points_expire(as_of=store_today() + timedelta(days=31)).points == 60


@pytest.mark.django_db
def test_reversing_a_partly_expired_earning_takes_back_only_what_did_not_expire(tiers):
    _policy("after_earning", 30, "days")
    ann = member_create(email="partly@example.com")
    order = _earn(ann, 100)
    points_adjust(member=ann, points=-40, reason="spent", actor=SYSTEM)  # 60 left in the order's batch
    _age(order, 31)
    _earn(ann, 50)  # a later batch, not expired
    assert points_expire().points == 60
    result = entry_reverse(entry=order, reason="refunded", actor=SYSTEM, policy="cap")
    # 100 earned, 60 expired: 40 owed, and the member has 50 available.
    assert result.entry.points == -40 and result.shortfall == 0
    ann.refresh_from_db()
    assert ann.available_points == 10 and _remaining(ann) == [0, 10]
    assert ledger_differences() == []


@pytest.mark.django_db
def test_a_fully_expired_earning_cannot_be_reversed_again(tiers):
    _policy("after_earning", 30, "days")
    ann = member_create(email="gone@example.com")
    order = _earn(ann, 100)
    _age(order, 31)
    points_expire()
    with pytest.raises(LoyaltyError, match="already taken back in full"):
        entry_reverse(entry=order, reason="refunded", actor=SYSTEM, policy="cap")


@pytest.mark.django_db
def test_the_bulk_path_spends_batches_as_the_single_path_does(tiers):
    ann = member_create(email="bulk@example.com")
    for points in (100, 50):
        _earn(ann, points)
    entries_post_bulk(
        postings=[
            Posting(ann.pk, -120, "a"),
            Posting(ann.pk, 70, "b"),
            Posting(ann.pk, -40, "c"),
        ],
        actor=SYSTEM,
        source="import",
    )
    assert _remaining(ann) == [0, 0, 60]
    assert ledger_differences() == []


@pytest.mark.django_db
def test_expire_points_command(tiers, capsys):
    _policy("after_earning", 30, "days")
    ann = member_create(email="cmd@example.com")
    _earn(ann, 90)
    day = (store_today() + timedelta(days=31)).isoformat()
    call_command("expire_points", "--dry-run", "--as-of", day)
    assert "90 points of 1 members would expire" in capsys.readouterr().out
    call_command("expire_points", "--as-of", day)
    assert "90 points of 1 members expired" in capsys.readouterr().out
    call_command("expire_points", "--as-of", day)
    assert "0 points of 0 members expired" in capsys.readouterr().out


@pytest.mark.django_db
def test_expire_points_refuses_a_bad_date():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("expire_points", "--as-of", "31/12/2026")


@pytest.mark.django_db
def test_a_bulk_credit_on_a_balance_below_zero_repays_it_first(tiers):
    ann = member_create(email="bulkdebt@example.com")
    points_adjust(member=ann, points=-100, reason="allowed", actor=SYSTEM, policy="allow")
    entries_post_bulk(postings=[Posting(ann.pk, 250, "credit")], actor=SYSTEM, source="import")
    assert _remaining(ann) == [150]
    assert ledger_differences() == []


@pytest.mark.django_db
def test_the_bulk_reversal_of_a_partly_expired_earning_matches_the_single_one(tiers):
    from loyalty.services import entries_reverse_bulk

    _policy("after_earning", 30, "days")
    ann = member_create(email="bulkpartly@example.com")
    order = _earn(ann, 100)
    points_adjust(member=ann, points=-40, reason="spent", actor=SYSTEM)
    _age(order, 31)
    _earn(ann, 50)
    points_expire()
    result = entries_reverse_bulk(entry_ids=[order.pk], reason="refunded", actor=SYSTEM, source="admin", policy="cap")
    assert result.posted == 1 and result.points_debited == 40
    ann.refresh_from_db()
    assert ann.available_points == 10 and _remaining(ann) == [0, 10]
    assert ledger_differences() == []


@pytest.mark.django_db
def test_reconcile_holds_a_batchs_member_and_its_line_to_the_ledger(tiers):
    """The batch table keeps no foreign key for its member, and its line is a copy of the ledger's credits:
    reconcile_ledger checks both."""
    ann = member_create(email="ann@example.com")
    bob = member_create(email="bob@example.com")
    earning = _earn(ann, 100)
    _earn(ann, 20)
    _earn(bob, 50)
    assert ledger_differences() == []
    batch = PointsBatch.objects.get(entry=earning)
    PointsBatch.objects.filter(pk=batch.pk).update(member_id=bob.pk)
    found = ledger_differences()
    assert any(d.figure == "batch's member" and d.cached == bob.pk and d.ledger == ann.pk for d in found)
    PointsBatch.objects.filter(pk=batch.pk).update(member_id=ann.pk, through=95, points=95)
    found = {(d.member_id, d.figure, d.cached, d.ledger) for d in ledger_differences()}
    assert found == {(ann.pk, "batches", 115, 120), (ann.pk, "line of batches", 100, 95)}
    PointsBatch.objects.filter(pk=batch.pk).update(through=100, points=100)
    assert ledger_differences() == []


@pytest.mark.django_db
def test_an_expiration_among_other_rows_of_a_bulk_call_ends_where_spending_has_reached(tiers):
    """The bulk path places an expiration on the line after the debits before it in the same call, as the single
    path would one by one: 30 spent by the adjustment, then 40 more by the expiration (the credit between moves
    nothing), so its span is (30, 70]: 40 of the first batch, none of the credit's."""
    ann = member_create(email="mixed@example.com")
    first = _earn(ann, 100)
    entries_post_bulk(
        postings=[
            Posting(ann.pk, -30, "spent"),
            Posting(ann.pk, 50, "credit"),
            Posting(ann.pk, -40, "expired", kind=EntryKind.EXPIRATION),
        ],
        actor=SYSTEM,
        source="schedule",
    )
    expiration = LedgerEntry.objects.get(kind=EntryKind.EXPIRATION)
    assert expiration.spent_through == 70
    assert batch_expired(first.pk) == 40
    assert batch_expired(LedgerEntry.objects.get(member=ann, points=50).pk) == 0
    assert _remaining(ann) == [30, 50]
    assert ledger_differences() == []


@pytest.mark.postgres  # row locks: SQLite has one writer at a time
@pytest.mark.django_db(transaction=True)
def test_a_debit_committed_while_the_run_waits_for_its_member_is_not_expired_again(tiers):
    """The run reads what is due under the members' locks: a write-off that holds the member while the run starts,
    and spends the due batch, leaves nothing to expire (read before the lock, the run posted the stale 100 and took
    the member to -50, expiring 50 points that were not due)."""
    import threading
    import time

    from django.db import connection, transaction

    _policy("after_earning", 30, "days")
    ann = member_create(email="race@example.com")
    _age(_earn(ann, 100), 31)
    _earn(ann, 50)
    holding = threading.Event()

    def write_off():
        try:
            with transaction.atomic():
                points_adjust(member=ann, points=-100, reason="write-off", actor=SYSTEM)
                holding.set()
                time.sleep(1.5)
        finally:
            connection.close()

    other = threading.Thread(target=write_off)
    other.start()
    assert holding.wait(10)
    run = points_expire()
    other.join()
    ann.refresh_from_db()
    assert (run.points, ann.available_points) == (0, 50)
    assert _remaining(ann) == [0, 50]
    assert ledger_differences() == []
