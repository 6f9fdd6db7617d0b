"""Every background job ends: an unexpected error in any task fails its job with a readable reason, a task that keeps
dying ends its job after JOB_MAX_STARTS, a silent job is queued again by the sweep, and its page offers Resume."""

from datetime import timedelta

import pytest
from django.utils import timezone

from imports.models import BackfillRun, BackfillStatus, ImportJob, ImportStatus
from imports.services import backfill as backfill_services
from imports.services.backfill import backfill_run_create
from imports.services.kinds.points import PointsKind
from imports.services.stuck_jobs import silent_jobs_requeue
from imports.tasks.backfill import backfill_run_task
from imports.tasks.import_job import check_import_job, undo_import_job
from loyalty.models import CustomerGroup, GroupAction, JobStatus, Member
from loyalty.services import groups as group_services
from loyalty.tasks.groups import group_action_run_task, group_action_undo_task
from tests.factories import EarnRuleFactory, MemberFactory
from tests.imports.helpers import applied, checked, upload

pytestmark = pytest.mark.django_db

POINTS = "email,points\nann@shop.example,5\nbob@shop.example,7\n"


@pytest.fixture
def members(tiers):
    return [MemberFactory(email="ann@shop.example"), MemberFactory(email="bob@shop.example")]


def _boom(*args, **kwargs):
    raise ValueError("the disk said no")


def test_an_unexpected_error_in_the_check_fails_the_job_with_the_reason(members, monkeypatch):
    monkeypatch.setattr(PointsKind, "resolve", _boom)
    job = upload(POINTS)
    check_import_job.delay(job.pk)
    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED
    assert job.error == "The check stopped: ValueError: the disk said no."
    assert job.task_starts == 0


def test_an_unexpected_error_in_the_undo_fails_the_job_and_undo_again_finishes_it(members, manager, monkeypatch):
    import loyalty.services as services
    from imports.services import jobs

    job = applied(POINTS, actor=manager)
    real = services.entries_reverse_bulk
    monkeypatch.setattr(services, "entries_reverse_bulk", _boom)
    jobs.import_job_request_undo(job=job, actor=manager, reason="wrong file")
    undo_import_job.delay(job.pk)
    job.refresh_from_db()
    assert (job.status, job.error) == (
        ImportStatus.FAILED,
        "The undo stopped: ValueError: the disk said no. Undo again reverses the rest.",
    )
    monkeypatch.setattr(services, "entries_reverse_bulk", real)
    from imports.services.stuck_jobs import job_resume

    assert job_resume(kind="import", pk=job.pk) == "undo", "a failed undo resumes its undo, never the apply"
    undo_import_job.delay(job.pk)
    job.refresh_from_db()
    assert job.status == ImportStatus.UNDONE
    assert sum(Member.objects.values_list("available_points", flat=True)) == 0
    assert job.undo_reason == "wrong file"


def test_a_task_that_keeps_dying_ends_its_job_as_failed(members, settings):
    settings.JOB_MAX_STARTS = 3
    job = upload(POINTS)  # three workers died on it already
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.CHECKING, task_starts=3)
    check_import_job.delay(job.pk)
    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED
    assert job.error.startswith("The check stopped: Its background task started 3 times without finishing")


def test_the_sweep_queues_a_silent_job_of_every_kind_and_leaves_a_live_one(
    members, manager, monkeypatch, django_capture_on_commit_callbacks
):
    long_ago = timezone.now() - timedelta(hours=1)
    never_checked = upload(POINTS)  # the web process died after the upload committed, before queueing the check
    ImportJob.objects.filter(pk=never_checked.pk).update(created_at=long_ago)
    stuck_apply = checked(POINTS.replace("5", "50"))
    ImportJob.objects.filter(pk=stuck_apply.pk).update(status=ImportStatus.APPLYING, heartbeat_at=long_ago)
    alive = upload(POINTS.replace("5", "500"))
    ImportJob.objects.filter(pk=alive.pk).update(status=ImportStatus.CHECKING, heartbeat_at=timezone.now())

    EarnRuleFactory(name="Sign up", kind="signup", points=10, points_per_currency_unit=None, hold_days=0)
    # Queued, but the message was lost.
    monkeypatch.setattr(backfill_services, "queue_task", lambda *args, **kwargs: None)
    run = backfill_run_create(actor=manager)
    BackfillRun.objects.filter(pk=run.pk).update(created_at=long_ago)

    group = CustomerGroup.objects.create(name="All", is_static=True)
    group_services.group_static_members_add(group=group, text="ann@shop.example")
    monkeypatch.setattr(group_services, "queue_task", lambda *args, **kwargs: None)
    action = group_services.group_action_create(
        group=group, apply_type="relative", points=3, comment="Sorry", actor=manager
    )
    GroupAction.objects.filter(pk=action.pk).update(status=JobStatus.RUNNING, heartbeat_at=long_ago)

    monkeypatch.undo()
    with django_capture_on_commit_callbacks(execute=True):
        queued = silent_jobs_requeue()
    assert queued == {"import": [never_checked.pk, stuck_apply.pk], "backfill": [run.pk], "group": [action.pk]}
    statuses = dict(ImportJob.objects.values_list("pk", "status"))
    assert statuses == {
        never_checked.pk: ImportStatus.CHECKED,
        stuck_apply.pk: ImportStatus.APPLIED,
        alive.pk: ImportStatus.CHECKING,
    }
    assert BackfillRun.objects.get().status == BackfillStatus.DONE
    assert GroupAction.objects.get().status == JobStatus.DONE
    assert silent_jobs_requeue() == {"import": [], "backfill": [], "group": []}


def test_a_stuck_apply_offers_resume_on_its_page_and_resume_finishes_it(
    client, manager, members, settings, django_capture_on_commit_callbacks
):
    settings.JOB_HEARTBEAT_SECONDS = 1
    job = checked(POINTS)
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportStatus.APPLYING, heartbeat_at=timezone.now() - timedelta(seconds=5)
    )
    client.force_login(manager)
    page = client.get(f"/admin/imports/importjob/{job.pk}/change/")
    assert page.context["can_resume"] and b'value="Resume"' in page.content
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/admin/imports/importjob/{job.pk}/resume/", follow=True)
    assert "Applying import" in response.content.decode()
    job.refresh_from_db()
    assert (job.status, job.applied) == (ImportStatus.APPLIED, 2)
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.APPLYING, heartbeat_at=timezone.now())
    assert not client.get(f"/admin/imports/importjob/{job.pk}/change/").context["can_resume"], "its task beats"


def test_failed_backfill_and_group_action_pages_offer_resume(
    client, manager, members, monkeypatch, django_capture_on_commit_callbacks
):
    EarnRuleFactory(name="Sign up", kind="signup", points=10, points_per_currency_unit=None, hold_days=0)
    monkeypatch.setattr(backfill_services, "_apply_range", _boom)
    run = backfill_run_create(actor=manager, queue=False)
    backfill_run_task.delay(run.pk)
    run.refresh_from_db()
    assert (run.status, run.error) == (
        BackfillStatus.FAILED,
        "The run stopped: ValueError: the disk said no. Resume credits the rest.",
    )
    monkeypatch.undo()
    client.force_login(manager)
    page = client.get(f"/admin/imports/backfillrun/{run.pk}/change/")
    assert page.context["can_resume"]
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/admin/imports/backfillrun/{run.pk}/resume/")
    assert BackfillRun.objects.get().status == BackfillStatus.DONE

    before = Member.objects.get(email="ann@shop.example").available_points
    group = CustomerGroup.objects.create(name="All", is_static=True)
    group_services.group_static_members_add(group=group, text="ann@shop.example")
    monkeypatch.setattr(group_services, "queue_task", lambda *args, **kwargs: None)
    action = group_services.group_action_create(
        group=group, apply_type="relative", points=3, comment="Hi", actor=manager
    )
    monkeypatch.setattr(group_services, "entries_post_bulk", _boom)
    group_action_run_task.delay(action.pk)
    action.refresh_from_db()
    assert action.status == JobStatus.FAILED
    assert "Stopped: ValueError: the disk said no. Resume posts the rest." in action.problems
    monkeypatch.undo()
    assert client.get(f"/admin/loyalty/groupaction/{action.pk}/change/").context["can_resume"]
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/admin/loyalty/groupaction/{action.pk}/resume/")
    assert GroupAction.objects.get().status == JobStatus.DONE
    assert Member.objects.get(email="ann@shop.example").available_points == before + 3
    monkeypatch.setattr(group_services, "queue_task", lambda *args, **kwargs: None)
    group_services.group_action_undo_request(action=GroupAction.objects.get(), actor=manager)
    monkeypatch.setattr(group_services, "entries_reverse_bulk", _boom)
    group_action_undo_task.delay(action.pk)
    assert GroupAction.objects.get().status == JobStatus.FAILED
