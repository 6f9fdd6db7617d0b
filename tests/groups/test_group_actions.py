"""Group actions: relative and "set absolute value" adjustments of a whole group in the background, and their undo."""

import pytest

from loyalty.errors import LoyaltyError
from loyalty.models import (
    CustomerGroup,
    EntrySource,
    GroupAction,
    JobStatus,
    LedgerEntry,
    Member,
    NegativeBalancePolicy,
    ProgramSettings,
)
from loyalty.services import groups as group_services
from loyalty.services import points_adjust
from loyalty.services.groups import group_action_run
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run a service and then what it queued on commit (the task), as a real commit would."""

    def call(service, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return service(**kwargs)

    return call


@pytest.fixture
def group_action_create(committed):
    return lambda **kwargs: committed(group_services.group_action_create, **kwargs)


@pytest.fixture
def group_action_undo_request(committed):
    return lambda **kwargs: committed(group_services.group_action_undo_request, **kwargs)


@pytest.fixture
def group(tiers, manager):
    """Three members with 200, 500 and 800 available points, in a static group; a fourth member outside it."""
    members = [MemberFactory(email=f"m{points}@x.example") for points in (200, 500, 800)]
    for member, points in zip(members, (200, 500, 800)):
        points_adjust(member=member, points=points, reason="Opening balance", actor=manager)
    MemberFactory(email="outside@x.example")
    group = CustomerGroup.objects.create(name="Three", is_static=True)
    group_services.group_static_members_add(group=group, text=" ".join(m.email for m in members))
    return group


def available():
    return dict(Member.objects.values_list("email", "available_points"))


def test_relative_adjustment_credits_every_member_with_the_comment(group, manager, group_action_create):
    action = group_action_create(group=group, apply_type="relative", points=100, comment="Spring bonus", actor=manager)
    action.refresh_from_db()
    assert action.status == JobStatus.DONE
    assert (action.members_total, action.members_done, action.posted, action.points_credited) == (3, 3, 3, 300)
    assert action.progress == 100
    assert available() == {"m200@x.example": 300, "m500@x.example": 600, "m800@x.example": 900, "outside@x.example": 0}
    entries = LedgerEntry.objects.filter(source=EntrySource.GROUP, source_ref=action.pk)
    assert sorted(entries.values_list("reason", "points")) == [("Spring bonus", 100)] * 3
    assert {e.actor_user_id for e in entries} == {manager.pk}


def test_set_absolute_value_brings_everyone_to_exactly_n(group, manager, group_action_create):
    action = group_action_create(group=group, apply_type="set", points=500, comment="Reset to 500", actor=manager)
    action.refresh_from_db()
    assert set(available().values()) == {500, 0}
    assert available()["outside@x.example"] == 0
    assert (action.posted, action.unchanged, action.points_credited, action.points_debited) == (2, 1, 300, 300)


def test_set_absolute_zero_writes_balances_off(group, manager, group_action_create):
    action = group_action_create(group=group, apply_type="set", points=0, comment="Program closed", actor=manager)
    action.refresh_from_db()
    assert action.points_debited == 1500
    assert set(available().values()) == {0}
    # A write-off lowers lifetime too (an adjustment), so the tier follows.
    assert set(Member.objects.filter(email__startswith="m").values_list("lifetime_points", flat=True)) == {0}


def test_debit_beyond_available_is_refused_per_member_under_forbid(group, manager, group_action_create):
    action = group_action_create(group=group, apply_type="relative", points=-300, comment="Correction", actor=manager)
    action.refresh_from_db()
    assert (action.posted, action.refused) == (2, 1)
    assert "only 200 are available" in action.problems
    assert available()["m200@x.example"] == 200
    assert available()["m800@x.example"] == 500


def test_debit_capped_when_the_program_says_cap(group, manager, group_action_create):
    ProgramSettings.objects.filter(pk=1).update(negative_balance_policy=NegativeBalancePolicy.CAP)
    ProgramSettings.load()
    ProgramSettings.objects.update(negative_balance_policy=NegativeBalancePolicy.CAP)
    group_action_create(group=group, apply_type="relative", points=-300, comment="Correction", actor=manager)
    assert available()["m200@x.example"] == 0


def test_running_again_posts_nothing_twice(group, manager, group_action_create):
    action = group_action_create(group=group, apply_type="relative", points=100, comment="Bonus", actor=manager)
    GroupAction.objects.filter(pk=action.pk).update(status=JobStatus.FAILED)  # as if the worker died after posting
    group_action_run(action_id=action.pk)
    assert available()["m200@x.example"] == 300
    assert LedgerEntry.objects.filter(source=EntrySource.GROUP, source_ref=action.pk).count() == 3
    group_action_run(action_id=action.pk)  # a finished action is left alone
    assert available()["m200@x.example"] == 300


def test_progress_is_written_chunk_by_chunk(group, manager, monkeypatch, group_action_create):
    seen = []
    real = group_services.group_action_range_apply

    def spy(*, range_id):
        outcome = real(range_id=range_id)
        seen.append(GroupAction.objects.get(ranges=range_id).progress)
        return outcome

    monkeypatch.setattr(group_services, "CHUNK", 2)
    monkeypatch.setattr(group_services, "group_action_range_apply", spy)
    group_action_create(group=group, apply_type="relative", points=5, comment="Bit by bit", actor=manager)
    assert seen == [66, 100]


def test_undo_reverses_the_whole_batch(group, manager, group_action_create, group_action_undo_request):
    action = group_action_create(group=group, apply_type="set", points=0, comment="Write-off", actor=manager)
    group_action_undo_request(action=action, actor=manager)
    action.refresh_from_db()
    assert action.status == JobStatus.UNDONE
    assert available() == {"m200@x.example": 200, "m500@x.example": 500, "m800@x.example": 800, "outside@x.example": 0}
    reversals = LedgerEntry.objects.filter(source=EntrySource.GROUP, source_ref=action.pk, kind="reversal")
    assert reversals.count() == 3
    assert all(r.reason.startswith(f"Undo of group action #{action.pk}") for r in reversals)
    with pytest.raises(LoyaltyError, match="only a finished action can be undone"):
        group_action_undo_request(action=action, actor=manager)


def test_undo_after_points_were_spent_takes_what_is_left(
    group, manager, group_action_create, group_action_undo_request
):
    action = group_action_create(group=group, apply_type="relative", points=100, comment="Bonus", actor=manager)
    member = Member.objects.get(email="m200@x.example")
    points_adjust(member=member, points=-250, reason="Spent", actor=manager)
    group_action_undo_request(action=action, actor=manager)
    member.refresh_from_db()
    assert member.available_points == 0  # 50 were left of the 100; the shortfall is recorded for the merchant
    assert member.shortfalls.get().points == 50


@pytest.mark.parametrize(
    ("apply_type", "points", "comment", "message"),
    [
        ("relative", 0, "x", "must not be 0"),
        ("set", -5, "x", "0 or more"),
        ("relative", 10, "  ", "comment is required"),
        ("sideways", 10, "x", "Unknown apply type"),
        ("relative", 9223372036854775807, "x", "within ±10,000,000"),
        ("set", 10_000_001, "x", "within ±10,000,000"),
    ],
)
def test_bad_requests_are_refused_before_anything_runs(
    group, manager, apply_type, points, comment, message, group_action_create
):
    with pytest.raises(LoyaltyError, match=message):
        group_action_create(group=group, apply_type=apply_type, points=points, comment=comment, actor=manager)
    assert not GroupAction.objects.exists()


def test_admin_action_confirms_then_runs(group, client, manager, django_capture_on_commit_callbacks):
    client.force_login(manager)
    url = "/admin/loyalty/customergroup/"
    first = client.post(url, {"action": "adjust_group_points", "_selected_action": [group.pk]})
    assert first.status_code == 200
    assert "3 members now" in first.content.decode()
    token = first.context["form"]["action_token"].value()

    def confirm(points, comment, **kwargs):
        form = {"action": "adjust_group_points", "_selected_action": [group.pk], "post": "yes", "action_token": token}
        return client.post(url, {**form, "apply_type": "relative", "points": points, "comment": comment}, **kwargs)

    assert "Points must not be 0" in confirm("0", "x").content.decode()
    huge = confirm("99999999999999999999999", "x")
    assert huge.status_code == 200 and "less than or equal to 10000000" in huge.content.decode()
    assert not GroupAction.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        done = confirm("25", "Thanks", follow=True)
    assert "Started 1 group action" in done.content.decode()
    action = GroupAction.objects.get()
    assert action.status == JobStatus.DONE
    status = client.get(f"/admin/loyalty/groupaction/{action.pk}/status.json").json()
    assert (status["progress"], status["finished"]) == (100, True)
    assert "+75" in status["summary"]
    page = client.get(f"/admin/loyalty/groupaction/{action.pk}/change/")
    assert "Undo this action" in page.content.decode()
    preview = client.get(f"/admin/loyalty/groupaction/{action.pk}/undo/").content.decode()
    assert "Confirm: undo this action" in preview and "Points out" in preview
    assert available()["m200@x.example"] == 225, "the preview reverses nothing"
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/admin/loyalty/groupaction/{action.pk}/undo/", {"post": "yes", "action_token": "t1"})
    assert available()["m200@x.example"] == 200


def test_a_deadlock_during_a_group_action_is_retried_and_posts_once(group, manager, monkeypatch):
    from django.db import OperationalError

    from loyalty.tasks.groups import group_action_run_task

    real = group_services._run_chunk
    calls = []

    def deadlocks_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("deadlock detected")
        return real(*args, **kwargs)

    monkeypatch.setattr(group_services, "_run_chunk", deadlocks_once)
    action = group_services.group_action_create(
        group=group, apply_type="relative", points=100, comment="Spring bonus", actor=manager
    )
    assert group_action_run_task.apply(args=[action.pk], throw=False).successful()
    action.refresh_from_db()
    assert action.status == JobStatus.DONE and len(calls) == 2
    assert available() == {"m200@x.example": 300, "m500@x.example": 600, "m800@x.example": 900, "outside@x.example": 0}
