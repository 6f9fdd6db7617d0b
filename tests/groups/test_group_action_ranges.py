"""A big group action spreads over workers: above GROUP_ACTION_SPREAD_MEMBERS its ranges are Celery tasks of their own
(run eagerly here), the last closes the action, a range delivered again posts nothing, progress sums the ranges."""

import pytest

from loyalty.models import EntrySource, GroupAction, GroupActionRange, JobStatus, LedgerEntry
from loyalty.selectors import ledger_differences
from loyalty.services import groups as group_services
from loyalty.tasks.groups import group_action_range_task, group_action_run_task
from tests.groups.test_group_actions import available, group  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def spread(monkeypatch, settings):
    settings.GROUP_ACTION_SPREAD_MEMBERS = 1
    monkeypatch.setattr(group_services, "CHUNK", 2)


def _action(group, manager, monkeypatch):  # noqa: F811
    with monkeypatch.context() as patch:
        patch.setattr(group_services, "queue_task", lambda *args: None)  # the create's own queueing
        return group_services.group_action_create(
            group=group, apply_type="relative", points=100, comment="Spread", actor=manager
        )


def test_ranges_run_as_tasks_and_the_last_closes_the_action(group, manager, spread, monkeypatch):  # noqa: F811
    action = _action(group, manager, monkeypatch)
    queued = []
    real_queue = group_services.queue_task
    monkeypatch.setattr(
        group_services, "queue_task", lambda name, *args: (queued.append(name), real_queue(name, *args))
    )
    group_action_run_task.delay(action.pk)
    action.refresh_from_db()
    assert queued == ["loyalty.group_action_range", "loyalty.group_action_range"], "3 members in ranges of 2"
    assert action.status == JobStatus.DONE
    assert (action.members_total, action.members_done, action.posted, action.points_credited) == (3, 3, 3, 300)
    ranges = list(action.ranges.order_by("position"))
    assert [len(r.member_ids) for r in ranges] == [2, 1] and all(r.done for r in ranges)
    assert sum(r.points_credited for r in ranges) == action.points_credited
    assert available() == {"m200@x.example": 300, "m500@x.example": 600, "m800@x.example": 900, "outside@x.example": 0}

    assert group_action_range_task.delay(ranges[0].pk).get() == "skipped"  # delivered again: nothing posted
    assert LedgerEntry.objects.filter(source=EntrySource.GROUP, source_ref=action.pk).count() == 3
    assert GroupAction.objects.get(pk=action.pk).posted == 3
    assert ledger_differences() == []


def test_a_failed_range_fails_the_action_and_resume_posts_only_the_rest(group, manager, spread, monkeypatch):  # noqa: F811
    action = _action(group, manager, monkeypatch)
    real = group_services._run_chunk
    calls = []

    def fails_second(action, member_ids, policy):
        calls.append(list(member_ids))
        if len(calls) == 2:
            raise ValueError("the disk said no")
        return real(action, member_ids, policy)

    monkeypatch.setattr(group_services, "_run_chunk", fails_second)
    group_action_run_task.delay(action.pk)
    action.refresh_from_db()
    assert action.status == JobStatus.FAILED and "the disk said no" in action.problems
    assert action.members_done == 2 and GroupActionRange.objects.filter(action=action, done=True).count() == 1

    group_action_run_task.delay(action.pk)  # Resume
    action.refresh_from_db()
    assert action.status == JobStatus.DONE and len(calls) == 3, "only the range not done ran again"
    assert (action.members_done, action.posted, action.points_credited) == (3, 3, 300)
    assert available()["m800@x.example"] == 900
