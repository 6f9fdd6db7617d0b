"""Reward past actions on a real worker: the run's member ranges are Celery tasks of their own (imports.backfill_range),
the range that completes the run queues its final step, and a range whose worker is SIGKILLed mid-transaction is
delivered again and posts nothing twice.

Real parts: PostgreSQL, Redis as the broker, `celery worker` processes. Ranges of 10 member ids (BACKFILL_RANGE_MEMBERS
in the worker's environment), 40 members: four ranges. The kill: the test holds a lock on a member of the second range,
so that range's task waits inside its transaction (after committing its delivery count); the worker is killed there,
the lock released, a new worker started, and the run's Resume (as its page and the stuck-job sweep do) queues the
ranges not done. Redis may also hand the killed message out again (acks_late, a 10-second visibility timeout here):
whichever delivery comes second finds the range done.
"""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from imports.models import BackfillRange, BackfillRun, BackfillStatus
from imports.services.backfill import backfill_run_create
from imports.services.stuck_jobs import job_requeue
from imports.tasks.backfill import backfill_range_task, backfill_run_task
from loyalty.models import EarnRuleKind, LedgerEntry, Member, ProgramSettings
from loyalty.selectors import ledger_differences
from tests.factories import EarnRuleFactory, OrderFactory
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

MEMBERS = 40


@pytest.fixture
def past(tiers):
    """40 members who signed up before the program started, each with two paid orders before it."""
    start = timezone.now() - timedelta(days=10)
    ProgramSettings.load()
    ProgramSettings.objects.filter(pk=1).update(program_started_at=start, hold_days_default=0)
    EarnRuleFactory(name="Sign up", kind=EarnRuleKind.SIGNUP, points=100, points_per_currency_unit=None, hold_days=0)
    EarnRuleFactory(name="Place an order", kind=EarnRuleKind.ORDER, points_per_currency_unit=1, hold_days=0)
    Member.objects.bulk_create(
        [
            Member(email=f"past{i}@shop.example", tier=tiers[0], signed_up_at=start - timedelta(days=100))
            for i in range(MEMBERS)
        ]
    )
    for member in Member.objects.order_by("pk"):
        OrderFactory(member=member, total=Decimal("10.00"), placed_at=start - timedelta(days=20))
        OrderFactory(member=member, total=Decimal("5.00"), placed_at=start - timedelta(days=5))
    return sorted(Member.objects.values_list("pk", flat=True))


@pytest.fixture
def worker(celery_worker_process):
    celery_worker_process.stop()
    celery_worker_process.env.update(BACKFILL_RANGE_MEMBERS="10", CELERY_VISIBILITY_TIMEOUT="10")
    celery_worker_process.start()
    return celery_worker_process


def _run() -> BackfillRun:
    return BackfillRun.objects.get()


def _assert_every_credit_once(run: BackfillRun) -> None:
    entries = LedgerEntry.objects.filter(source="backfill", source_ref=run.pk)
    assert entries.count() == 3 * MEMBERS, "a sign-up and two orders per member, once each"
    assert entries.values("idempotency_key").distinct().count() == 3 * MEMBERS
    assert (run.members_credited, run.orders_credited, run.points_credited) == (MEMBERS, 2 * MEMBERS, 115 * MEMBERS)
    balances = set(Member.objects.filter(email__startswith="past").values_list("available_points", flat=True))
    assert balances == {115}
    assert ledger_differences() == []


def test_the_ranges_run_as_tasks_and_the_last_closes_the_run(worker, past, manager):
    run = backfill_run_create(actor=manager, queue=False)
    backfill_run_task.delay(run.pk)
    wait_for(lambda: _run().status == BackfillStatus.DONE, timeout=180, what="the worker to finish the run")
    run = _run()
    ranges = list(run.ranges.order_by("lo"))
    assert len(ranges) == run.steps_total == run.steps_done == MEMBERS // 10
    assert all(r.done and r.attempts == 1 for r in ranges)
    assert sum(r.points_credited for r in ranges) == run.points_credited, "progress is the sum of the ranges"
    _assert_every_credit_once(run)

    # A range delivered again (a duplicate message, a sweep) finds itself done: nothing posted, nothing counted.
    backfill_range_task.delay(ranges[0].pk)
    time.sleep(3)
    assert LedgerEntry.objects.filter(source="backfill").count() == 3 * MEMBERS
    _assert_every_credit_once(_run())


def test_a_range_killed_mid_transaction_is_delivered_again_and_posts_nothing_twice(worker, past, manager):
    run = backfill_run_create(actor=manager, queue=False)
    second = past[10]  # the first member of the second range
    with transaction.atomic():
        Member.objects.select_for_update().get(pk=second)  # that range's task waits on it, inside its transaction
        backfill_run_task.delay(run.pk)
        wait_for(
            lambda: BackfillRange.objects.filter(run=run, lo=second, attempts=1).exists(),
            timeout=120,
            what="the second range to start",
        )
        time.sleep(1)
        assert BackfillRange.objects.filter(run=run, done=True).count() == 1, "the first range is in"
        worker.kill()
    killed = BackfillRange.objects.get(run=run, lo=second)
    assert not killed.done and killed.attempts == 1, "the killed delivery is counted; its transaction left nothing"
    assert not LedgerEntry.objects.filter(source="backfill", member_id__gte=second, member_id__lt=second + 10).exists()
    assert _run().status == BackfillStatus.RUNNING and _run().steps_done == 1

    worker.start()
    assert job_requeue(kind="backfill", pk=run.pk, silent_seconds=0)  # the run page's Resume
    wait_for(lambda: _run().status == BackfillStatus.DONE, timeout=180, what="the new worker to finish the run")
    killed.refresh_from_db()
    assert killed.done  # Resume counts the range's deliveries afresh
    run = _run()
    assert run.steps_done == run.steps_total == MEMBERS // 10
    _assert_every_credit_once(run)
