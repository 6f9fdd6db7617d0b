"""Point adjustment uploads: preview, apply through the bulk path, safe re-upload and redelivery, error file, undo."""

import csv
import io

import pytest

from imports.models import ImportJob, ImportStatus
from imports.services.jobs import import_job_apply, import_job_resume, import_job_undo
from loyalty.models import EntrySource, LedgerEntry, Member, ProgramSettings
from loyalty.services import points_adjust
from tests.factories import MemberFactory
from tests.imports.helpers import applied, checked, upload
from tiers.models import TierChange

pytestmark = pytest.mark.django_db


@pytest.fixture
def members(tiers):
    return [
        MemberFactory(email="ann@shop.example", customer_id="C-1"),
        MemberFactory(email="bob@shop.example", customer_id="C-2"),
        MemberFactory(email="cat@shop.example"),
    ]


def balances(*emails):
    return [Member.objects.get(email=e).available_points for e in emails]


def test_preview_counts_rows_to_apply_and_first_problems(members):
    job = checked(
        "email,customer_id,points,reason\n"
        "ann@shop.example,,600,Welcome gift\n"
        ",C-2,25,\n"
        "nobody@shop.example,,10,\n"
        "cat@shop.example,,ten,\n"
        "cat@shop.example,,0,\n"
    )
    assert job.status == ImportStatus.CHECKED
    assert (job.total, job.to_apply, job.already_applied, job.problems) == (5, 2, 0, 3)
    assert job.first_problems == [
        {"row": 4, "column": "email", "reason": "no member has the email nobody@shop.example"},
        {"row": 5, "column": "points", "reason": "“ten” is not a whole number of points"},
        {"row": 6, "column": "points", "reason": "points must not be 0"},
    ]
    assert LedgerEntry.objects.count() == 0, "checking applies nothing"


def test_apply_credits_members_moves_tiers_and_summarises(members, manager):
    job = applied(
        "email,customer_id,points,reason\nann@shop.example,,600,Welcome gift\n,C-2,2500,\nann@shop.example,,-100,\n",
        actor=manager,
        reason="Spring campaign",
    )
    assert job.status == ImportStatus.APPLIED
    assert (job.applied, job.skipped, job.failed) == (3, 0, 0)
    assert (job.points_credited, job.points_debited, job.members_touched) == (3100, 100, 2)
    assert job.progress == job.total == 3
    ann, bob = Member.objects.get(email="ann@shop.example"), Member.objects.get(email="bob@shop.example")
    assert (ann.available_points, ann.lifetime_points, ann.tier.name) == (500, 500, "Silver")
    assert (bob.available_points, bob.tier.name) == (2500, "Gold")
    entries = LedgerEntry.objects.filter(source=EntrySource.IMPORT, source_ref=job.pk).order_by("pk")
    assert [e.reason for e in entries] == ["Welcome gift", "Spring campaign", "Spring campaign"]
    assert {e.actor_user_id for e in entries} == {manager.pk}
    assert TierChange.objects.filter(member=bob, to_tier__name="Gold").exists()


def test_uploading_the_same_file_again_applies_nothing_twice(members):
    text = "email,points\nann@shop.example,100\nbob@shop.example,50\n"
    first = applied(text)
    again = checked(text)
    assert again.previous_upload == first
    assert (again.to_apply, again.already_applied) == (0, 2)
    again = import_job_apply(job_id=again.pk)
    assert (again.applied, again.skipped) == (0, 2)
    assert balances("ann@shop.example", "bob@shop.example") == [100, 50]
    assert LedgerEntry.objects.count() == 2


def test_reference_keeps_a_row_from_applying_twice_across_different_files(members):
    applied("email,points,reference\nann@shop.example,100,crm-1\n")
    job = applied("email,points,reference,reason\nann@shop.example,100,crm-1,resent\nbob@shop.example,5,crm-2,\n")
    assert (job.applied, job.skipped) == (1, 1)
    assert balances("ann@shop.example", "bob@shop.example") == [100, 5]


def test_preview_counts_a_reference_another_file_applied_as_already_applied(members):
    applied("email,points,reference\nann@shop.example,100,crm-1\n")
    job = checked("email,points,reference\nann@shop.example,100,crm-1\nbob@shop.example,5,\n")
    assert (job.to_apply, job.already_applied) == (1, 1)
    job = import_job_apply(job_id=job.pk)
    assert (job.applied, job.skipped) == (1, 1)
    assert balances("ann@shop.example", "bob@shop.example") == [100, 5]


def test_duplicate_reference_in_one_file_fails_the_later_row(members):
    job = applied("email,points,reference\nann@shop.example,100,r1\nbob@shop.example,50,r1\n")
    assert job.first_problems == [{"row": 3, "column": "reference", "reason": "the reference r1 is also on row 2"}]
    assert balances("ann@shop.example", "bob@shop.example") == [100, 0]


def test_a_redelivered_apply_posts_nothing_twice(members, settings):
    settings.IMPORT_CHUNK_ROWS = 2
    text = "email,points\n" + "".join(f"{e},10\n" for e in ["ann@shop.example", "bob@shop.example"] * 3)
    job = applied(text)
    assert job.applied == 6
    # A worker that died after committing chunks but before the job recorded them: the task runs again from 0.
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.APPLYING, applied_through_row=0, progress=0)
    job = import_job_apply(job_id=job.pk)
    assert job.status == ImportStatus.APPLIED
    assert LedgerEntry.objects.filter(source_ref=job.pk).count() == 6
    assert balances("ann@shop.example", "bob@shop.example") == [30, 30]
    assert job.skipped == 6, "the repeated rows are reported as already applied"


def _six_rows_whose_second_chunk_fails_once(settings, monkeypatch, error):
    """A checked file of six rows in chunks of two, whose second chunk raises `error` the first time it is applied;
    returns the job and the chunks' first rows in the order they were tried."""
    from imports.services.kinds import points as points_kind

    settings.IMPORT_CHUNK_ROWS = 2
    text = "email,points\n" + "".join(f"{e},10\n" for e in ["ann@shop.example", "bob@shop.example"] * 3)
    job = checked(text)
    real = points_kind.PointsKind.apply_chunk
    calls = []

    def fails_on_second_chunk(self, ctx, lo, hi):
        calls.append(lo)
        if len(calls) == 2:
            raise error
        return real(self, ctx, lo, hi)

    monkeypatch.setattr(points_kind.PointsKind, "apply_chunk", fails_on_second_chunk)
    return job, calls


def test_apply_resumes_after_the_last_committed_chunk(members, settings, monkeypatch):
    from imports.tasks.import_job import apply_import_job

    job, _calls = _six_rows_whose_second_chunk_fails_once(settings, monkeypatch, RuntimeError("worker lost"))
    apply_import_job.delay(job.pk)  # the task ends; the job holds the outcome
    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED
    assert job.error == "The apply stopped: RuntimeError: worker lost. Resume applies the rest."
    assert (job.progress, job.applied) == (2, 2)

    assert import_job_resume(job=job)  # the second chunk fails only once
    job = import_job_apply(job_id=job.pk)
    assert (job.status, job.applied, job.progress) == (ImportStatus.APPLIED, 6, 6)
    assert balances("ann@shop.example", "bob@shop.example") == [30, 30]


def test_debit_beyond_available_is_refused_by_row_under_forbid(members):
    job = applied("email,points\nann@shop.example,100\nann@shop.example,-500\nbob@shop.example,7\n")
    assert (job.applied, job.failed) == (2, 1)
    assert job.first_problems == [
        {"row": 3, "column": "", "reason": "Cannot take 500 points from ann@shop.example: only 100 are available."}
    ]
    assert balances("ann@shop.example") == [100]


def test_error_file_lists_failed_rows_with_reason_and_escapes_formulae(members):
    job = applied(
        'email;points;reason\nann@shop.example;10;ok\nnobody@shop.example;-5;=HYPERLINK("http://x")\n@bob;+3;hi\n'
    )
    with job.error_file.open("rb") as f:
        rows = list(csv.reader(io.StringIO(f.read().decode("utf-8-sig")), delimiter=";"))
    assert rows[0] == ["email", "points", "reason", "row", "error"]
    assert rows[1] == [
        "nobody@shop.example",
        "'-5",
        '\'=HYPERLINK("http://x")',
        "3",
        "email: no member has the email nobody@shop.example",
    ]
    assert rows[2] == ["'@bob", "'+3", "hi", "4", "email: no member has the email @bob"]
    assert len(rows) == 3


def test_fixed_error_file_can_be_uploaded_again(members):
    job = applied("email,points\nann@shop.example,10\nbob@shop.example,-5\n")
    with job.error_file.open("rb") as f:
        fixed = f.read().decode("utf-8-sig").replace("bob@shop.example,'-5", "bob@shop.example,5")
    again = applied(fixed)
    assert (again.applied, again.failed) == (1, 0)
    assert balances("bob@shop.example") == [5]


def test_undo_reverses_every_entry_and_reports_what_it_could_not(members):
    job = applied("email,points\nann@shop.example,600\nbob@shop.example,300\n")
    points_adjust(member=Member.objects.get(email="bob@shop.example"), points=-250, reason="spent", actor=_system())
    job = import_job_undo(job_id=job.pk)
    assert job.status == ImportStatus.UNDONE
    assert (job.undo_reversed, job.undo_refused) == (1, 1)
    assert job.undo_report == ["Cannot reverse: 300 points were credited but only 50 are available."]
    ann = Member.objects.get(email="ann@shop.example")
    assert (ann.available_points, ann.lifetime_points, ann.tier.name) == (0, 0, "Bronze")
    # Undoing again finds nothing more to reverse.
    assert import_job_undo(job_id=job.pk).undo_reversed == 1


def test_undo_under_cap_policy_takes_what_is_left(members):
    ProgramSettings.objects.update_or_create(pk=1, defaults={"negative_balance_policy": "cap"})
    job = applied("email,points\nbob@shop.example,300\n")
    points_adjust(member=Member.objects.get(email="bob@shop.example"), points=-250, reason="spent", actor=_system())
    job = import_job_undo(job_id=job.pk)
    assert (job.undo_reversed, job.undo_refused) == (1, 0)
    assert balances("bob@shop.example") == [0]


def test_a_job_is_not_applied_before_it_is_checked(members):
    job = upload("email,points\nann@shop.example,5\n")
    assert import_job_apply(job_id=job.pk).status == ImportStatus.UPLOADED
    assert LedgerEntry.objects.count() == 0


def _system():
    from loyalty.actors import SystemActor

    return SystemActor("tests")


def test_a_deadlock_mid_apply_is_retried_not_reported_as_a_failure(members, settings, monkeypatch):
    from django.db import OperationalError

    from imports.tasks.import_job import apply_import_job

    job, calls = _six_rows_whose_second_chunk_fails_once(settings, monkeypatch, OperationalError("deadlock detected"))
    # As a worker runs it: the Retry is taken up as a new attempt (in-process here, so without the delay).
    result = apply_import_job.apply(args=[job.pk], throw=False)
    assert result.successful()
    job.refresh_from_db()
    assert (job.status, job.applied, job.error) == (ImportStatus.APPLIED, 6, "")
    assert len(calls) == 4 and calls[1] == calls[2], "the retry continues at the chunk that was rolled back"
    assert balances("ann@shop.example", "bob@shop.example") == [30, 30]
