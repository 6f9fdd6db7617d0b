"""A big points import applies in member ranges (ImportRange): each range its own task and transaction, the job's
counters the sums of its done ranges, a range delivered twice posting once, a range that meets a database error tried
again on its own, a failed job resumed without double credits, the undo reversing every range.

Celery runs eagerly here (each range task inline), as in tests/backfill/test_backfill_parallel.py; IMPORT_RANGE_ROWS
is set small so a file of a few dozen rows splits into several ranges.
"""

import pytest
from celery.exceptions import Retry
from django.contrib.auth.models import Permission
from django.db import OperationalError, transaction

from imports.models import ImportJob, ImportRange, ImportRowProblem, ImportStatus
from imports.services import jobs
from imports.services import sql as import_sql
from imports.services.jobs import (
    import_job_close,
    import_job_resume,
    import_job_start_apply,
    import_job_start_undo,
    import_job_undo,
)
from imports.services.kinds import KINDS
from imports.tasks.import_job import apply_import_job, import_range_task
from loyalty.models import (
    EarnRule,
    EarnRuleKind,
    EntrySource,
    LedgerEntry,
    Member,
    ProgramSettings,
    RewardToken,
    StaffDailyTotal,
)
from loyalty.selectors import ledger_differences
from tests.factories import MemberFactory
from tests.imports.helpers import checked

pytestmark = pytest.mark.django_db

EMAILS = [f"m{i}@shop.example" for i in range(8)]
RANGE_ROWS = 5


def _file() -> str:
    """36 rows over 8 members, each member's rows spread through the file: credits, debits, a debit beyond the
    balance (refused by the ledger), a row for nobody (a problem), a repeated reference, a row with a reference."""
    lines = ["email,points,reason,reference"]
    for n in range(4):
        for i, email in enumerate(EMAILS):
            lines.append(f"{email},{10 * (i + 1) + n},round {n},")
    lines += [
        "m0@shop.example,-15,correction,",
        "m1@shop.example,-999999,too much,",
        "nobody@shop.example,5,,",
        "m2@shop.example,7,crm,crm-1",
        "m3@shop.example,7,crm again,crm-1",
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def members(tiers):
    return [MemberFactory(email=email) for email in EMAILS]


@pytest.fixture
def small_ranges(settings):
    settings.IMPORT_RANGE_ROWS = RANGE_ROWS


def _job() -> ImportJob:
    return ImportJob.objects.get()


def _outcome(job: ImportJob) -> dict:
    """Everything the apply leaves, in terms that do not depend on ids or on the order entries were written in."""
    job.refresh_from_db()
    entries = sorted(
        LedgerEntry.objects.filter(source=EntrySource.IMPORT, source_ref=job.pk).values_list(
            "member__email", "kind", "points", "status", "reason", "idempotency_key", "actor_user_id"
        )
    )
    members = sorted(
        Member.objects.values_list("email", "available_points", "pending_points", "lifetime_points", "tier__name")
    )
    problems = sorted(ImportRowProblem.objects.filter(job=job).values_list("row_number", "reason", "phase"))
    counters = {
        name: getattr(job, name)
        for name in (
            "status",
            "total",
            "problems",
            "applied",
            "skipped",
            "failed",
            "points_credited",
            "points_debited",
            "members_touched",
            "progress",
            "first_problems",
        )
    }
    return {"entries": entries, "members": members, "problems": problems, "counters": counters}


def _apply_through_the_task(text: str) -> ImportJob:
    job = checked(text, reason="Spring")
    apply_import_job.delay(job.pk)
    job.refresh_from_db()
    return job


def test_a_split_import_leaves_exactly_what_the_same_file_applied_in_one_task_leaves(members, settings):
    text = _file()
    with transaction.atomic():
        settings.IMPORT_RANGE_ROWS = 10_000
        whole = _apply_through_the_task(text)
        assert not whole.ranges.exists(), "below the threshold the job applies in chunks, in one task"
        expected = _outcome(whole)
        transaction.set_rollback(True)  # the same file again, on the same members, split this time
    assert not ImportJob.objects.exists() and not LedgerEntry.objects.exists()

    settings.IMPORT_RANGE_ROWS = RANGE_ROWS
    job = _apply_through_the_task(text)
    ranges = list(job.ranges.order_by("lo"))
    assert len(ranges) > 3 and all(r.done and r.attempts == 1 for r in ranges)
    assert [r.lo for r in ranges] == sorted(r.lo for r in ranges) and all(r.lo <= r.hi for r in ranges)
    assert all(earlier.hi < later.lo for earlier, later in zip(ranges, ranges[1:], strict=False))
    assert _outcome(job) == expected
    assert expected["counters"]["status"] == ImportStatus.APPLIED
    assert expected["counters"]["failed"] == 3, "nobody, the repeated reference, the debit beyond the balance"
    assert sum(r.applied for r in ranges) == job.applied, "the job's counters are the sums of its ranges"
    assert sum(r.points_credited for r in ranges) == job.points_credited
    assert sum(r.rows for r in ranges) == job.total - job.problems + 1, "the rows without a check problem"
    assert not import_sql.table_exists(job.ready_table) and not import_sql.table_exists(job.rows_table)
    assert ledger_differences() == []


def test_a_range_delivered_again_posts_nothing_and_counts_once(members, small_ranges, monkeypatch):
    queued = []
    monkeypatch.setattr(jobs, "queue_task", lambda name, *args: queued.append((name, *args)))
    job = checked(_file(), reason="Spring")
    apply_import_job.delay(job.pk)
    assert {name for name, *_args in queued} == {"imports.import_range"}
    outcomes = []
    for _name, range_id in queued:
        outcomes.append(import_range_task.apply(args=[range_id]).get())
        assert import_range_task.apply(args=[range_id]).get() == "skipped", "the second delivery finds it done"
    assert outcomes[-1] == "last" and set(outcomes[:-1]) == {"done"}
    job.refresh_from_db()
    assert job.status == ImportStatus.APPLIED, "the last range queued the final step"
    entries = LedgerEntry.objects.filter(source=EntrySource.IMPORT, source_ref=job.pk).count()
    before = _outcome(job)
    for span in job.ranges.all():
        assert import_range_task.delay(span.pk).get() == "skipped"
    assert import_job_close(job_id=job.pk).status == ImportStatus.APPLIED
    assert LedgerEntry.objects.filter(source=EntrySource.IMPORT, source_ref=job.pk).count() == entries
    assert _outcome(job) == before
    assert all(r.attempts == 1 for r in job.ranges.all())


def test_a_range_that_meets_a_database_error_is_tried_again_on_its_own(members, small_ranges, monkeypatch):
    kind = KINDS["points"]
    real, failed = kind.apply_chunk, []
    m3 = Member.objects.get(email="m3@shop.example").pk

    def deadlocked_once_for_m3(ctx, lo, hi, members=None):
        if members and members[0] <= m3 <= members[1] and not failed:
            failed.append(members)
            raise OperationalError("deadlock detected")
        return real(ctx, lo, hi, members)

    monkeypatch.setattr(kind, "apply_chunk", deadlocked_once_for_m3)
    queued = []
    monkeypatch.setattr(jobs, "queue_task", lambda name, *args: queued.append((name, *args)))
    job = checked(_file(), reason="Spring")
    apply_import_job.delay(job.pk)
    retried = []
    for _name, range_id in queued:
        try:
            import_range_task.apply(args=[range_id])
        except Retry:
            retried.append(range_id)
    assert failed and len(retried) == 1, "only the range that met the error is tried again"
    job.refresh_from_db()
    assert job.status == ImportStatus.APPLYING and job.ranges.filter(done=False).count() == 1
    assert import_range_task.apply(args=[retried[0]]).get() == "last"  # the retry's delivery
    job.refresh_from_db()
    assert job.status == ImportStatus.APPLIED
    assert job.applied == sum(r.applied for r in job.ranges.all())
    assert LedgerEntry.objects.filter(source=EntrySource.IMPORT, source_ref=job.pk).count() == job.applied
    assert ledger_differences() == []


def test_a_failed_split_job_resumed_applies_only_the_ranges_not_done(members, small_ranges, monkeypatch):
    kind = KINDS["points"]
    real = kind.apply_chunk
    m5 = Member.objects.get(email="m5@shop.example").pk

    def failing_for_m5(ctx, lo, hi, members=None):
        if members and members[0] <= m5 <= members[1]:
            raise RuntimeError("the disk said no")
        return real(ctx, lo, hi, members)

    monkeypatch.setattr(kind, "apply_chunk", failing_for_m5)
    job = _apply_through_the_task(_file())
    assert job.status == ImportStatus.FAILED and "the disk said no" in job.error
    assert Member.objects.get(email="m5@shop.example").available_points == 0
    done_before = set(job.ranges.filter(done=True).values_list("lo", flat=True))
    assert done_before and job.has_applied_rows
    assert import_sql.table_exists(job.ready_table), "kept for the resume"

    applied = []

    def recording(ctx, lo, hi, members=None):
        applied.append(members[0])
        return real(ctx, lo, hi, members)

    monkeypatch.setattr(kind, "apply_chunk", recording)
    assert import_job_resume(job=job)
    apply_import_job.delay(job.pk)
    job.refresh_from_db()
    assert job.status == ImportStatus.APPLIED
    assert applied and not done_before & set(applied), "the ranges done before are not applied again"
    entries = LedgerEntry.objects.filter(source=EntrySource.IMPORT, source_ref=job.pk)
    assert entries.count() == entries.values("idempotency_key").distinct().count() == job.applied
    # Each member's credits once: 4 rounds of 10 * (i + 1) + n, and the rows of the end of the file.
    balances = dict(Member.objects.values_list("email", "available_points"))
    assert balances["m5@shop.example"] == 4 * 60 + 6
    assert balances["m0@shop.example"] == 4 * 10 + 6 - 15
    assert balances["m2@shop.example"] == 4 * 30 + 6 + 7
    assert job.applied == sum(r.applied for r in job.ranges.all())
    assert ledger_differences() == []


def _undo_outcome(job: ImportJob) -> dict:
    job = import_job_undo(job_id=job.pk)
    return {
        "status": job.status,
        "counts": (job.undo_reversed, job.undo_refused, job.undo_report),
        "members": sorted(Member.objects.values_list("email", "available_points", "lifetime_points", "tier__name")),
    }


def test_undo_of_a_split_job_reverses_every_range(members, settings):
    credits = "email,points\n" + "".join(f"{EMAILS[i % 8]},{i + 1}\n" for i in range(30))
    settings.IMPORT_RANGE_ROWS = RANGE_ROWS
    job = _apply_through_the_task(credits)
    assert job.status == ImportStatus.APPLIED and job.ranges.count() > 3
    undone = _undo_outcome(job)
    assert undone["status"] == ImportStatus.UNDONE and undone["counts"] == (30, 0, [])
    assert set(Member.objects.values_list("available_points", flat=True)) == {0}
    assert ledger_differences() == []


def test_undo_of_a_split_job_does_what_undo_of_the_same_file_applied_in_one_task_does(members, settings):
    """With debits in the file, some reversals are refused (the points are gone): the same ones either way."""
    with transaction.atomic():
        settings.IMPORT_RANGE_ROWS = 10_000
        expected = _undo_outcome(_apply_through_the_task(_file()))
        transaction.set_rollback(True)
    settings.IMPORT_RANGE_ROWS = RANGE_ROWS
    job = _apply_through_the_task(_file())
    assert job.ranges.count() > 3
    assert _undo_outcome(job) == expected
    assert expected["counts"][0] > 0
    assert ledger_differences() == []


def test_undo_of_a_failed_split_job_reverses_its_done_ranges_and_drops_its_table(members, small_ranges, monkeypatch):
    kind = KINDS["points"]
    real = kind.apply_chunk
    m5 = Member.objects.get(email="m5@shop.example").pk

    def failing_for_m5(ctx, lo, hi, members=None):
        if members and members[0] <= m5 <= members[1]:
            raise RuntimeError("the disk said no")
        return real(ctx, lo, hi, members)

    monkeypatch.setattr(kind, "apply_chunk", failing_for_m5)
    job = _apply_through_the_task("email,points\n" + "".join(f"{EMAILS[i % 8]},{i + 1}\n" for i in range(30)))
    assert job.status == ImportStatus.FAILED and job.applied > 0
    import_job_start_undo(job=job)  # the failed job's Undo: some of its ranges are done
    job = import_job_undo(job_id=job.pk)
    assert job.status == ImportStatus.UNDONE and job.undo_reversed == job.applied
    assert set(Member.objects.values_list("available_points", flat=True)) == {0}
    assert not import_sql.table_exists(job.ready_table) and not import_sql.table_exists(job.rows_table)
    # A range still queued when the job was undone applies nothing.
    span = job.ranges.filter(done=False).first()
    assert import_range_task.delay(span.pk).get() == "skipped"
    assert ledger_differences() == []


def _agent_may_apply(agent):
    agent.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="imports", codename__in=["apply_importjob"])
    )


def test_an_agents_limit_per_change_holds_row_by_row_inside_the_ranges(members, small_ranges, agent):
    ProgramSettings.objects.update_or_create(
        pk=1, defaults={"support_agent_limit": 1000, "support_agent_daily_limit": None}
    )
    _agent_may_apply(agent)
    # 20 rows of 100 and one of 5,000 (over the 1,000 a change).
    text = "email,points\n" + "".join(f"{EMAILS[i % 8]},100\n" for i in range(20)) + "m0@shop.example,5000\n"
    job = checked(text)
    assert import_job_start_apply(job=job, actor=agent)
    apply_import_job.delay(job.pk)
    job.refresh_from_db()
    assert job.status == ImportStatus.APPLIED and job.ranges.count() > 1
    assert (job.applied, job.failed, job.points_credited) == (20, 1, 2000)
    refusals = ImportRowProblem.objects.filter(job=job, phase="apply")
    assert list(refusals.values_list("row_number", flat=True)) == [22]
    assert "more than 1,000 points need a program manager" in refusals.get().reason
    assert ledger_differences() == []


def test_an_agents_daily_total_keeps_the_file_in_one_task_and_in_file_order(members, small_ranges, agent):
    """Ranges run in member order, in parallel: the daily total would refuse other rows than the file's order does
    (and the preview said), so an agent held to one applies the file in one task."""
    ProgramSettings.objects.update_or_create(
        pk=1, defaults={"support_agent_limit": 1000, "support_agent_daily_limit": 1500}
    )
    _agent_may_apply(agent)
    # 20 rows of 100 (2,000 in all, over the 1,500 a day) and one of 5,000 (over the 1,000 a change).
    text = "email,points\n" + "".join(f"{EMAILS[i % 8]},100\n" for i in range(20)) + "m0@shop.example,5000\n"
    job = checked(text)
    assert import_job_start_apply(job=job, actor=agent)
    apply_import_job.delay(job.pk)
    job.refresh_from_db()
    assert job.status == ImportStatus.APPLIED and not job.ranges.exists()
    assert (job.applied, job.failed, job.points_credited) == (15, 6, 1500)
    assert StaffDailyTotal.objects.get(user=agent).points == 1500
    refusals = ImportRowProblem.objects.filter(job=job, phase="apply")
    # File rows 2-21 are the rows of 100 (row 1 names the columns): the last five are over the day's total.
    assert sorted(refusals.values_list("row_number", flat=True)) == [17, 18, 19, 20, 21, 22]
    assert refusals.filter(row_number=22, reason__contains="more than 1,000 points need a program manager").exists()
    assert ledger_differences() == []


def test_members_and_orders_imports_stay_in_one_task(members, small_ranges):
    text = "email,first_name\n" + "".join(f"new{i}@shop.example,New\n" for i in range(12))
    job = checked(text, kind="members")
    apply_import_job.delay(job.pk)
    job.refresh_from_db()
    assert job.status == ImportStatus.APPLIED and job.applied == 12
    assert not ImportRange.objects.exists()


def test_a_split_tokens_import_leaves_what_the_same_file_applied_in_one_task_leaves(members, settings):
    rule = EarnRule.objects.create(name="Referral", kind=EarnRuleKind.CONVERSION, points=250)
    for n, member in enumerate(Member.objects.order_by("pk")):
        for k in range(3):
            RewardToken.objects.create(token=f"T{n}-{k}", member=member, earn_rule=rule if k else None)
    # Two tokens a member closed (with a sale amount, or the default rule), one rejected before it was ever credited
    # (half the members), a token nobody has, a token twice.
    rows = [f"T{n}-{k},closed,,{10 * n + k}.00" for n in range(8) for k in (0, 1)]
    rows += [f"T{n}-2,rejected,," for n in range(0, 8, 2)] + ["T99-0,closed,,", "T1-0,closed,,"]
    text = "token,status,email,amount\n" + "\n".join(rows) + "\n"

    def outcome(job):
        tokens = sorted(RewardToken.objects.values_list("token", "status", "amount"))
        return _outcome(job) | {"tokens": tokens}

    with transaction.atomic():
        settings.IMPORT_RANGE_ROWS = 10_000
        whole = _apply_through_the_task_as(text, kind="tokens")
        assert not whole.ranges.exists()
        expected = outcome(whole)
        transaction.set_rollback(True)
    settings.IMPORT_RANGE_ROWS = 4
    job = _apply_through_the_task_as(text, kind="tokens")
    assert job.ranges.count() > 3 and not job.ranges.filter(done=False).exists()
    assert outcome(job) == expected
    assert expected["counters"]["applied"] == 20 and expected["counters"]["failed"] == 2
    assert ledger_differences() == []


def _apply_through_the_task_as(text: str, *, kind: str) -> ImportJob:
    job = checked(text, kind=kind, reason="Spring")
    apply_import_job.delay(job.pk)
    job.refresh_from_db()
    return job


def test_a_big_file_whose_every_row_has_a_problem_ends_applied_with_nothing_applied(members, small_ranges):
    job = _apply_through_the_task("email,points\n" + "".join(f"nobody{i}@shop.example,5\n" for i in range(12)))
    assert job.status == ImportStatus.APPLIED
    assert (job.total, job.problems, job.applied, job.failed, job.progress) == (12, 12, 0, 12, 12)
    assert not job.ranges.exists() and not import_sql.table_exists(job.ready_table)


@pytest.mark.postgres  # two workers' transactions side by side; SQLite lets one writer at a time
@pytest.mark.django_db(transaction=True)
def test_two_apply_tasks_at_once_split_the_job_once_and_fail_nothing(members, small_ranges, monkeypatch):
    """Apply pressed twice (or a redelivered task) queues the job's apply twice, and two workers take it at once:
    the second waits for the first's split, then finds the ranges made, instead of making the job's ready table
    again under them and failing the job on their unique key."""
    import threading

    from django.db import connection

    from tests.side_by_side import SideBySide

    queued, errors = [], []
    monkeypatch.setattr(jobs, "queue_task", lambda name, *args: queued.append((name, *args)))
    job = checked(_file(), reason="Spring")
    assert import_job_start_apply(job=job)
    real, together = jobs._resolve, SideBySide()

    def checking_side_by_side(*args, **kwargs):
        together.meet()  # both applies inside their split at once, unless one waits for the other
        return real(*args, **kwargs)

    def apply():
        try:
            jobs.import_job_apply(job_id=job.pk, spread=True)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    monkeypatch.setattr(jobs, "_resolve", checking_side_by_side)
    threads = [threading.Thread(target=apply) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    job.refresh_from_db()
    assert job.status == ImportStatus.APPLYING and job.ranges.count() > 3
    assert import_sql.one(f"SELECT COUNT(*) FROM {job.ready_table}") == job.total
    for _name, range_id in queued:  # every range queued by both: each posts once
        import_range_task.apply(args=[range_id])
    job.refresh_from_db()
    assert job.status == ImportStatus.APPLIED
    entries = LedgerEntry.objects.filter(source=EntrySource.IMPORT, source_ref=job.pk)
    assert entries.count() == entries.values("idempotency_key").distinct().count() == job.applied
    assert ledger_differences() == []


def test_a_range_whose_worker_keeps_dying_fails_the_job_however_often_the_sweep_queues_it(
    members, small_ranges, monkeypatch, settings
):
    """Each delivery of a range counts itself before it works; a worker killed in it (out of memory) leaves the job
    silent, and the sweep queues the job's apply again. Those applies must not start the count again, or the range
    would take down a worker every sweep for ever instead of failing the job after JOB_MAX_STARTS deliveries."""
    queued = []
    monkeypatch.setattr(jobs, "queue_task", lambda name, *args: queued.append((name, *args)))
    job = checked(_file(), reason="Spring")
    apply_import_job.delay(job.pk)
    first = queued[0][1]
    for _death in range(settings.JOB_MAX_STARTS):
        assert jobs.import_range_start(range_id=first)  # a delivery counted, then its worker killed
        apply_import_job.delay(job.pk)  # what the sweep queues once the job is silent
    assert import_range_task.apply(args=[first]).get() == "failed"
    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED and f"started {settings.JOB_MAX_STARTS} times" in job.error
    assert not LedgerEntry.objects.filter(source=EntrySource.IMPORT, source_ref=job.pk).exists()
    # A person's Resume starts the count again.
    assert import_job_resume(job=job)
    assert ImportRange.objects.get(pk=first).attempts == 0


@pytest.mark.parametrize("split", [False, True], ids=["in one task", "in member ranges"])
def test_parsed_rows_lost_in_a_database_crash_are_parsed_again_from_the_file(members, settings, split):
    """The parsed rows' table is UNLOGGED on PostgreSQL: recovering from a crash, the database brings it back empty.
    The apply parses the stored file again, instead of checking no rows and calling the job applied."""
    settings.IMPORT_RANGE_ROWS = RANGE_ROWS if split else 10_000
    job = checked(_file(), reason="Spring")
    import_sql.execute(f"DELETE FROM {job.rows_table}")  # what crash recovery leaves of an UNLOGGED table
    apply_import_job.delay(job.pk)
    job.refresh_from_db()
    assert job.ranges.exists() == split
    assert (job.status, job.total, job.applied, job.failed) == (ImportStatus.APPLIED, 37, 34, 3)
    assert LedgerEntry.objects.filter(source=EntrySource.IMPORT, source_ref=job.pk).count() == 34
    assert ledger_differences() == []
