"""Reward past actions in member ranges (BackfillRange): each range its own task and transaction, the run's progress
the sum of its done ranges, a range delivered twice posting nothing twice, a failed range resumed on its own.

Celery runs eagerly here (each range task inline); tests/integration/test_backfill_ranges.py runs them on a real worker.
"""

import pytest
from celery.exceptions import Retry
from django.db import IntegrityError

from imports.models import BackfillRange, BackfillRun, BackfillStatus
from imports.services import backfill as service
from imports.tasks.backfill import backfill_range_task, backfill_run_task
from loyalty.models import LedgerEntry, Member
from loyalty.selectors import ledger_differences
from tests.backfill.test_backfill import balances

pytestmark = pytest.mark.django_db

EXPECTED = {"ann@x.example": 350, "bob@x.example": 30, "cy@x.example": 20, "dan@x.example": 200}


@pytest.fixture
def one_member_per_range(settings):
    settings.BACKFILL_RANGE_MEMBERS = 1


def test_the_run_task_queues_one_task_per_range_and_the_last_closes_the_run(history, manager, one_member_per_range):
    run = service.backfill_run_create(actor=manager, queue=False)
    backfill_run_task.delay(run.pk)
    run.refresh_from_db()
    assert run.status == BackfillStatus.DONE
    assert (run.members_credited, run.orders_credited, run.points_credited) == (2, 4, 600)
    ranges = list(run.ranges.all())
    assert len(ranges) == Member.objects.count() == run.steps_total == run.steps_done
    assert all(r.done and r.attempts == 1 for r in ranges)
    assert sum(r.points_credited for r in ranges) == run.points_credited, "progress sums the ranges"
    assert balances() == EXPECTED
    assert LedgerEntry.objects.filter(source="backfill", source_ref=run.pk).count() == 6
    assert ledger_differences() == []


def test_a_range_delivered_again_posts_nothing_and_counts_once(history, manager, one_member_per_range):
    run = service.backfill_run_apply(run_id=service.backfill_run_create(actor=manager, queue=False).pk)
    entries = LedgerEntry.objects.count()
    for span in run.ranges.all():
        assert backfill_range_task.delay(span.pk).get() == "skipped"
    assert service.backfill_run_close(run_id=run.pk).status == BackfillStatus.DONE
    run.refresh_from_db()
    assert LedgerEntry.objects.count() == entries
    assert (run.members_credited, run.orders_credited, run.points_credited) == (2, 4, 600)
    assert balances() == EXPECTED


def test_progress_is_the_sum_of_the_ranges_done(history, manager, one_member_per_range, monkeypatch):
    ann, bob, cy, dan = history
    applied = []
    real = service._apply_range

    def then_look(run, lines, lo, hi):
        applied.append(lo)
        return real(run, lines, lo, hi)

    monkeypatch.setattr(service, "_apply_range", then_look)
    run = service.backfill_run_create(actor=manager, queue=False)
    service.backfill_run_apply(run_id=run.pk)
    run.refresh_from_db()
    assert applied == sorted(applied) and len(applied) == 4
    ann_range = BackfillRange.objects.get(run=run, lo=ann.pk)
    assert (ann_range.members_credited, ann_range.orders_credited, ann_range.points_credited) == (1, 2, 350)
    assert run.progress == 100


def test_a_range_that_fails_fails_the_run_and_a_resume_applies_only_the_ranges_not_done(
    history, manager, one_member_per_range, monkeypatch
):
    ann, bob, cy, dan = history
    real = service._apply_range

    def failing_for_bob(run, lines, lo, hi):
        if lo <= bob.pk <= hi:
            raise RuntimeError("the database went away")
        return real(run, lines, lo, hi)

    monkeypatch.setattr(service, "_apply_range", failing_for_bob)
    run = service.backfill_run_create(actor=manager, queue=False)
    backfill_run_task.delay(run.pk)
    run.refresh_from_db()
    assert run.status == BackfillStatus.FAILED and "went away" in run.error
    assert balances()["bob@x.example"] == 0
    assert not BackfillRange.objects.get(run=run, lo=bob.pk).done
    done_before = set(run.ranges.filter(done=True).values_list("lo", flat=True))

    applied = []

    def recording(run, lines, lo, hi):
        applied.append(lo)
        return real(run, lines, lo, hi)

    monkeypatch.setattr(service, "_apply_range", recording)
    backfill_run_task.delay(run.pk)  # Resume
    run.refresh_from_db()
    assert run.status == BackfillStatus.DONE
    assert not done_before & set(applied), "the ranges done before are not applied again"
    assert (run.members_credited, run.orders_credited, run.points_credited) == (2, 4, 600)
    assert balances() == EXPECTED


def test_a_range_that_meets_another_on_the_database_is_retried_on_its_own(
    history, manager, one_member_per_range, monkeypatch
):
    """What an order moved to another range's member mid-run causes (a key clash or a deadlock between ranges): that
    range is tried again (Celery retry), and the run finishes with every credit once."""
    ann, bob, cy, dan = history
    real, failed = service._apply_range, []

    def clashing_once_for_bob(run, lines, lo, hi):
        if lo <= bob.pk <= hi and not failed:
            failed.append(lo)
            raise IntegrityError('duplicate key value violates unique constraint "entry_idempotency_key_unique"')
        return real(run, lines, lo, hi)

    monkeypatch.setattr(service, "_apply_range", clashing_once_for_bob)
    queued = []
    monkeypatch.setattr(service, "queue_task", lambda name, *args: queued.append((name, *args)))
    run = service.backfill_run_create(actor=manager, queue=False)
    backfill_run_task.delay(run.pk)
    assert [name for name, *_args in queued] == ["imports.backfill_range"] * 4
    retried = []
    for _name, range_id in queued:
        try:
            backfill_range_task.apply(args=[range_id])
        except Retry:
            retried.append(range_id)
    assert len(retried) == 1, "the range that met another's key is tried again later, on its own"
    run.refresh_from_db()
    assert run.status == BackfillStatus.RUNNING and run.steps_done == 3
    bob_range = BackfillRange.objects.get(run=run, lo=bob.pk)
    assert backfill_range_task.apply(args=[bob_range.pk]).get() == "last"  # the retry's delivery
    run.refresh_from_db()
    assert failed and run.status == BackfillStatus.DONE
    assert (run.members_credited, run.orders_credited, run.points_credited) == (2, 4, 600)
    assert balances() == EXPECTED


def test_a_range_whose_worker_keeps_dying_fails_the_run(history, manager, one_member_per_range, settings):
    settings.JOB_MAX_STARTS = 2
    run = service.backfill_run_create(actor=manager, queue=False)
    BackfillRun.objects.filter(pk=run.pk).update(status=BackfillStatus.RUNNING)
    span = BackfillRange.objects.create(run=run, lo=0, hi=10**9, attempts=2)  # two deliveries died already
    assert backfill_range_task.delay(span.pk).get() == "failed"
    run.refresh_from_db()
    assert run.status == BackfillStatus.FAILED and "started 2 times without finishing" in run.error
    assert not LedgerEntry.objects.filter(source="backfill").exists()


def test_a_resumed_run_covers_members_who_came_after_its_ranges(history, manager, start, monkeypatch, settings):
    from datetime import timedelta

    from tests.factories import MemberFactory

    ann, bob, cy, dan = history
    real = service._apply_range

    def failing_for_bob(run, lines, lo, hi):
        if lo <= bob.pk <= hi:
            raise RuntimeError("the database went away")
        return real(run, lines, lo, hi)

    settings.BACKFILL_RANGE_MEMBERS = 1
    monkeypatch.setattr(service, "_apply_range", failing_for_bob)
    run = service.backfill_run_create(actor=manager, queue=False)
    backfill_run_task.delay(run.pk)
    monkeypatch.setattr(service, "_apply_range", real)
    late = MemberFactory(email="late@x.example", signed_up_at=start - timedelta(days=30))  # imported since
    backfill_run_task.delay(run.pk)  # Resume
    run.refresh_from_db()
    assert run.status == BackfillStatus.DONE and run.ranges.filter(lo=late.pk).exists()
    assert balances()["late@x.example"] == 200
