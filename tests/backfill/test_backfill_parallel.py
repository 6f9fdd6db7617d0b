"""Reward past actions applies member ranges on several connections at once (PostgreSQL): the same credits, counters
and balances as one range after another, and a failure in one range leaves a run that resumes cleanly."""

import threading

import pytest
from django.db import IntegrityError

from imports.models import BackfillStatus
from imports.services import backfill as service
from loyalty.models import LedgerEntry, Member
from tests.backfill.test_backfill import balances

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

EXPECTED = {"ann@x.example": 350, "bob@x.example": 30, "cy@x.example": 20, "dan@x.example": 200}


@pytest.fixture
def one_member_per_range(monkeypatch, settings):
    """Every member id its own range, two ranges at a time; records which threads applied them."""
    monkeypatch.setattr(service, "CHUNK_MEMBERS", 1)
    settings.BACKFILL_PARALLEL_CHUNKS = 2
    threads = set()
    apply_chunk = service._apply_chunk

    def recording(run, lines, lo, hi):
        threads.add(threading.current_thread().name)
        return apply_chunk(run, lines, lo, hi)

    monkeypatch.setattr(service, "_apply_chunk", recording)
    return threads


def test_ranges_applied_at_once_credit_exactly_what_one_by_one_would(history, manager, one_member_per_range):
    run = service.backfill_run_apply(run_id=service.backfill_run_create(actor=manager, queue=False).pk)
    assert run.status == BackfillStatus.DONE
    assert (run.members_credited, run.orders_credited, run.points_credited) == (2, 4, 600)
    assert run.steps_done == run.steps_total == Member.objects.count()
    assert balances() == EXPECTED
    assert len(one_member_per_range) == 2, "two threads applied ranges at once"
    assert one_member_per_range and all(name.startswith("backfill") for name in one_member_per_range)
    assert LedgerEntry.objects.filter(source="backfill", source_ref=run.pk).count() == 6


def test_a_range_that_fails_fails_the_run_and_a_resume_finishes_it(history, manager, one_member_per_range, monkeypatch):
    ann, bob, cy, dan = history
    recording = service._apply_chunk

    def failing_for_bob(run, lines, lo, hi):
        if lo <= bob.pk <= hi:
            raise RuntimeError("the database went away")
        return recording(run, lines, lo, hi)

    monkeypatch.setattr(service, "_apply_chunk", failing_for_bob)
    run = service.backfill_run_create(actor=manager, queue=False)
    with pytest.raises(RuntimeError):
        service.backfill_run_apply(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == BackfillStatus.FAILED and "went away" in run.error
    assert balances()["bob@x.example"] == 0

    monkeypatch.setattr(service, "_apply_chunk", recording)
    run = service.backfill_run_apply(run_id=run.pk)
    assert run.status == BackfillStatus.DONE
    assert (run.members_credited, run.orders_credited, run.points_credited) == (2, 4, 600)
    assert balances() == EXPECTED


def test_a_range_that_meets_another_on_the_database_goes_again_on_its_own(
    history, manager, one_member_per_range, monkeypatch
):
    """What an order moved to another range's member mid-run causes (a key clash or a deadlock between ranges): that
    range is applied again once the others are in, and the run finishes with every credit once."""
    ann, bob, cy, dan = history
    recording, failed = service._apply_chunk, []

    def clashing_once_for_bob(run, lines, lo, hi):
        if lo <= bob.pk <= hi and not failed:
            failed.append(lo)
            raise IntegrityError('duplicate key value violates unique constraint "entry_idempotency_key_unique"')
        return recording(run, lines, lo, hi)

    monkeypatch.setattr(service, "_apply_chunk", clashing_once_for_bob)
    run = service.backfill_run_apply(run_id=service.backfill_run_create(actor=manager, queue=False).pk)
    assert failed and run.status == BackfillStatus.DONE
    assert (run.members_credited, run.orders_credited, run.points_credited) == (2, 4, 600)
    assert balances() == EXPECTED
