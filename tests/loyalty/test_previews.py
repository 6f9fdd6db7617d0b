"""Previews of bulk and destructive changes count what the change then does; lifetime follows a staff adjustment's
answer on both paths; a confirming form sent twice acts once (issue 14, items 1, 2 and 4)."""

import pytest
from django.contrib.messages import get_messages

from imports.models import ImportJob
from imports.services.jobs import import_job_apply, import_job_undo, import_job_undo_preview
from loyalty.models import CustomerGroup, EntrySource, GroupAction, LedgerEntry, Member, ProgramSettings
from loyalty.services import Posting, PostingsQuery, entries_post_bulk, points_adjust
from loyalty.services import groups as group_services
from loyalty.services.previews import (
    adjust_preview,
    group_action_preview,
    group_action_undo_preview,
    lifetime_choice,
)
from tests.factories import MemberFactory
from tests.imports.helpers import checked
from tiers.models import TierChange

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def silver_group(tiers, manager):
    """Three Silver members (600, 700, 145 available after a 455 redemption-free debit), in a static group."""
    members = []
    for email, points in (("a@x.example", 600), ("b@x.example", 700), ("c@x.example", 600)):
        member = MemberFactory(email=email)
        points_adjust(member=member, points=points, reason="Opening balance", actor=manager)
        members.append(member)
    points_adjust(member=members[2], points=-455, reason="Spent elsewhere", actor=manager, counts_toward_lifetime=False)
    group = CustomerGroup.objects.create(name="Silver three", is_static=True)
    group_services.group_static_members_add(group=group, text=" ".join(m.email for m in members))
    return group


def tiers_of():
    return dict(Member.objects.values_list("email", "tier__name"))


def run_group_action(django_capture_on_commit_callbacks, **kwargs):
    with django_capture_on_commit_callbacks(execute=True):
        action = group_services.group_action_create(**kwargs)
    action.refresh_from_db()
    return action


@pytest.mark.parametrize("counts", [False, True])
def test_a_group_write_off_preview_counts_what_the_run_does(
    silver_group, manager, counts, django_capture_on_commit_callbacks
):
    preview = group_action_preview(
        group=silver_group,
        apply_type="set",
        points=0,
        comment="Write-off",
        counts=counts,
        change_kind="write_off",
        actor=manager,
    )
    assert Member.objects.filter(available_points=0).count() == 0, "a preview writes nothing"
    moves_before = TierChange.objects.count()
    action = run_group_action(
        django_capture_on_commit_callbacks,
        group=silver_group,
        apply_type="set",
        points=0,
        comment="Write-off",
        actor=manager,
        change_kind="write_off",
        counts_toward_lifetime=counts,
    )
    assert (preview.members_affected, preview.points_out, preview.points_in) == (3, 1445, 0)
    assert (action.posted, action.points_debited, action.refused) == (preview.result.posted, 1445, 0)
    moved_down = TierChange.objects.count() - moves_before
    assert preview.result.tiers_down == moved_down == (3 if counts else 0)
    assert set(tiers_of().values()) == ({"Bronze"} if counts else {"Silver"})
    assert action.counts_toward_lifetime is counts
    assert not LedgerEntry.objects.filter(source=EntrySource.GROUP).exclude(counts_toward_lifetime=counts).exists()


def test_a_goodwill_credit_does_not_count_toward_lifetime_by_default(tiers, manager):
    assert lifetime_choice("goodwill", None) is False
    assert lifetime_choice("write_off", None) is False
    assert lifetime_choice("correction", None) is True
    assert lifetime_choice("goodwill", True) is True, "the staff member's answer wins"
    ProgramSettings.objects.filter(pk=1).update(lifetime_counts_goodwill=True)
    assert lifetime_choice("goodwill", None) is True, "the default is a program setting"


def test_lifetime_follows_the_answer_on_the_single_and_the_bulk_path(tiers, manager):
    single, bulk, query = (MemberFactory(email=f"{n}@x.example") for n in ("single", "bulk", "query"))
    points_adjust(member=single, points=900, reason="Goodwill", actor=manager, counts_toward_lifetime=False)
    entries_post_bulk(
        postings=[Posting(bulk.pk, 900, "Goodwill", counts_toward_lifetime=False)],
        actor=manager,
        source="admin",
        action="adjust",
    )
    entries_post_bulk(
        queries=[
            PostingsQuery(
                sql="SELECT 1 AS seq, %s AS member_id, 900 AS points, 'Goodwill' AS reason, NULL AS idempotency_key, "
                "'active' AS status, NULL AS hold_until, NULL AS earn_rule_id",
                params=[query.pk],
                kind="adjustment",
                counts_toward_lifetime=False,
            )
        ],
        actor=manager,
        source="import",
        action="import",
    )
    for member in Member.objects.filter(pk__in=[single.pk, bulk.pk, query.pk]):
        assert (member.available_points, member.lifetime_points, member.tier.name) == (900, 0, "Bronze")
        assert member.entries.get().counts_toward_lifetime is False


def test_adjust_preview_refuses_what_points_adjust_refuses(tiers, manager):
    poor, rich = MemberFactory(email="poor@x.example"), MemberFactory(email="rich@x.example")
    points_adjust(member=poor, points=145, reason="start", actor=manager)
    points_adjust(member=rich, points=150_000, reason="start", actor=manager)
    preview = adjust_preview(member_ids=[poor.pk, rich.pk], points=-99_999, reason="Fix", counts=True, actor=manager)
    assert preview.refused == ["Cannot take 99,999 points from poor@x.example: only 145 are available."]
    assert (preview.result.posted, preview.points_out, preview.result.tiers_down) == (1, 99_999, 0)
    [row_poor, row_rich] = preview.members
    assert (row_poor.available_after, row_poor.refusals) == (145, preview.refused)
    assert (row_rich.available_after, row_rich.lifetime_after) == (50_001, 50_001)


def test_the_undo_preview_counts_what_the_undo_does(silver_group, manager, django_capture_on_commit_callbacks):
    action = run_group_action(
        django_capture_on_commit_callbacks,
        group=silver_group,
        apply_type="relative",
        points=1500,
        comment="Gold for a month",
        actor=manager,
    )
    assert set(tiers_of().values()) == {"Gold"}
    preview = group_action_undo_preview(action=GroupAction.objects.get(pk=action.pk), actor=manager)
    assert (preview.points_out, preview.members_affected, preview.result.tiers_down) == (4500, 3, 3)
    with django_capture_on_commit_callbacks(execute=True):
        group_services.group_action_undo_request(action=action, actor=manager)
    assert set(Member.objects.values_list("available_points", flat=True)) == {600, 700, 145}
    assert set(tiers_of().values()) == {"Silver"}


def test_the_import_check_runs_the_apply_so_its_counts_are_the_applys(tiers, manager):
    ProgramSettings.objects.filter(pk=1).update(negative_balance_policy="forbid")
    poor = MemberFactory(email="poor@x.example")
    points_adjust(member=poor, points=145, reason="start", actor=manager)
    MemberFactory(email="ann@x.example")
    job = checked(
        "email,points\n"
        "ann@x.example,600\n"
        "poor@x.example,-99999\n"
        "poor@x.example,100\n"
        "poor@x.example,-200\n"
        "nobody@x.example,5\n",
        actor=manager,
    )
    assert (job.total, job.to_apply, job.problems) == (5, 3, 2)
    assert {p["row"]: p["reason"] for p in job.first_problems} == {
        3: "Cannot take 99,999 points from poor@x.example: only 145 are available.",
        6: "no member has the email nobody@x.example",
    }
    totals = job.preview_totals
    assert (totals["points_in"], totals["points_out"], totals["members"]) == (700, 200, 2)
    assert (totals["tiers_up"], totals["tiers_down"]) == (1, 0)
    ImportJob.objects.filter(pk=job.pk).update(applied_by=manager)
    done = import_job_apply(job_id=job.pk)
    assert (done.applied, done.failed, done.points_credited, done.points_debited) == (3, 2, 700, 200)
    assert done.members_touched == totals["members"]
    assert done.problems == 2, "the job page's preview still says what the check said"


def test_an_import_undo_preview_counts_what_the_undo_does(tiers, manager):
    MemberFactory(email="ann@x.example")
    job = checked("email,points\nann@x.example,600\n", actor=manager)
    ImportJob.objects.filter(pk=job.pk).update(applied_by=manager)
    import_job_apply(job_id=job.pk)
    preview = import_job_undo_preview(job=job, actor=manager)
    assert (preview.points_out, preview.members_affected, preview.result.tiers_down) == (600, 1, 1)
    done = import_job_undo(job_id=job.pk, actor=manager)
    assert done.undo_reversed == preview.result.posted == 1


def test_an_import_that_does_not_count_leaves_tiers(tiers, manager):
    from django.core.files.base import ContentFile

    from imports.services.jobs import import_job_check, import_job_create

    MemberFactory(email="ann@x.example")
    job = import_job_create(
        kind="points",
        upload=ContentFile(b"email,points\nann@x.example,600\n", name="gift.csv"),
        actor=manager,
        change_kind="goodwill",
    )
    assert job.counts_toward_lifetime is False, "a goodwill file takes the program's default: not counted"
    job = import_job_check(job_id=job.pk)
    assert job.preview_totals["tiers_up"] == 0
    import_job_apply(job_id=job.pk)
    ann = Member.objects.get(email="ann@x.example")
    assert (ann.available_points, ann.lifetime_points, ann.tier.name) == (600, 0, "Bronze")


# -- the admin's effect pages and their one-time tokens


def messages_of(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_group_action_shows_its_effect_then_starts_once(
    silver_group, client, manager, django_capture_on_commit_callbacks
):
    client.force_login(manager)
    url = "/admin/loyalty/customergroup/"
    form = client.post(url, {"action": "adjust_group_points", "_selected_action": [silver_group.pk]})
    token = form.context["form"]["action_token"].value()
    data = {
        "action": "adjust_group_points",
        "_selected_action": [silver_group.pk],
        "action_token": token,
        "apply_type": "set",
        "points": "0",
        "comment": "Write-off",
        "change_kind": "write_off",
    }
    effect = client.post(url, {**data, "preview": "yes"})
    assert effect.status_code == 200 and not GroupAction.objects.exists()
    [section] = effect.context["sections"]
    assert (section.totals["members"], section.totals["points_out"], section.totals["tiers_down"]) == (3, 1445, 0)
    assert "does not count toward lifetime" in effect.content.decode()
    confirm = dict(effect.context["hidden"])
    confirm["_selected_action"] = [silver_group.pk]
    confirm["post"] = "yes"
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, confirm)
        twice = client.post(url, confirm, follow=True)
    assert "nothing was started again" in " ".join(messages_of(twice))
    action = GroupAction.objects.get()
    assert (action.counts_toward_lifetime, action.change_kind, action.points_debited) == (False, "write_off", 1445)
    assert set(tiers_of().values()) == {"Silver"}, "a write-off that does not count keeps every tier"


def test_undo_shows_its_effect_then_undoes_once(silver_group, client, manager, django_capture_on_commit_callbacks):
    action = run_group_action(
        django_capture_on_commit_callbacks,
        group=silver_group,
        apply_type="relative",
        points=100,
        comment="Thanks",
        actor=manager,
    )
    client.force_login(manager)
    url = f"/admin/loyalty/groupaction/{action.pk}/undo/"
    effect = client.get(url)
    assert effect.context["sections"][0].totals["points_out"] == 300
    confirm = {**dict(effect.context["hidden"]), "post": "yes"}
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(url, confirm, follow=True)
        second = client.post(url, confirm, follow=True)
    assert any("Undoing group action" in m for m in messages_of(first))
    assert any("already submitted" in m for m in messages_of(second))
    assert LedgerEntry.objects.filter(source=EntrySource.GROUP, kind="reversal").count() == 3


def test_adjust_points_list_action_shows_its_effect_before_posting(tiers, client, manager):
    ann = MemberFactory(email="ann@x.example")
    points_adjust(member=ann, points=600, reason="start", actor=manager)
    client.force_login(manager)
    url = "/admin/loyalty/member/"
    form = client.post(url, {"action": "adjust_points", "_selected_action": [ann.pk], "index": "0"})
    token = form.context["form"]["action_token"].value()
    data = {
        "action": "adjust_points",
        "_selected_action": [ann.pk],
        "action_token": token,
        "apply_type": "set",
        "points": "0",
        "reason": "Closing the account",
        "change_kind": "write_off",
    }
    effect = client.post(url, {**data, "preview": "yes"})
    section = effect.context["sections"][0]
    assert (section.totals["points_out"], section.totals["tiers_down"]) == (600, 0)
    assert LedgerEntry.objects.count() == 1, "the effect page posts nothing"
    confirm = {**dict(effect.context["hidden"]), "_selected_action": [ann.pk], "post": "yes"}
    client.post(url, confirm)
    client.post(url, confirm)
    ann.refresh_from_db()
    assert (ann.available_points, ann.lifetime_points, ann.tier.name) == (0, 600, "Silver")
    assert LedgerEntry.objects.count() == 2, "sent twice, posted once"


def test_undo_group_actions_from_the_list_shows_the_effect_first(
    silver_group, client, manager, django_capture_on_commit_callbacks
):
    action = run_group_action(
        django_capture_on_commit_callbacks,
        group=silver_group,
        apply_type="relative",
        points=100,
        comment="Thanks",
        actor=manager,
    )
    client.force_login(manager)
    url = "/admin/loyalty/groupaction/"
    effect = client.post(url, {"action": "undo_group_actions", "_selected_action": [action.pk]})
    assert effect.context["sections"][0].totals["points_out"] == 300
    assert GroupAction.objects.get().status == "done", "the effect page undoes nothing"
    confirm = {**dict(effect.context["hidden"]), "_selected_action": [action.pk], "post": "yes"}
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, confirm)
        twice = client.post(url, confirm, follow=True)
    assert any("already submitted" in m for m in messages_of(twice))
    assert GroupAction.objects.get().status == "undone"


def test_select_all_on_the_entries_list_shows_the_jobs_effect(tiers, client, manager):
    from datetime import timedelta

    from django.utils import timezone

    from loyalty.services import points_earn

    for email in ("p1@x.example", "p2@x.example"):
        points_earn(
            member=MemberFactory(email=email),
            points=700,
            reason="Order",
            actor=manager,
            source="admin",
            hold_until=timezone.now() + timedelta(days=5),
        )
    client.force_login(manager)
    url = "/admin/loyalty/ledgerentry/?status__exact=pending"
    page = client.post(
        url, {"action": "approve_pending", "select_across": "1", "index": "0", "_selected_action": ["1"]}
    )
    [section] = page.context["sections"]
    assert (section.totals["members"], section.totals["tiers_up"], section.totals["posted"]) == (2, 2, 2)
    assert LedgerEntry.objects.filter(status="pending").count() == 2, "the effect approves nothing"


def test_select_all_give_reward_shows_its_effect_before_the_job(tiers, client, manager, monkeypatch):
    from tests.factories import RewardFactory

    queued = []
    monkeypatch.setattr("loyalty.admin.jobs.queue", lambda task, **kwargs: queued.append(kwargs))
    reward = RewardFactory(name="$5 off", points_cost=500)
    rich, poor = MemberFactory(email="rich@x.example"), MemberFactory(email="poor@x.example")
    points_adjust(member=rich, points=800, reason="start", actor=manager)
    points_adjust(member=poor, points=100, reason="start", actor=manager)
    client.force_login(manager)
    url = "/admin/loyalty/member/"
    data = {"action": "give_reward", "select_across": "1", "index": "0", "_selected_action": [rich.pk, poor.pk]}
    form = client.post(url, data)
    token = form.context["form"]["action_token"].value()
    effect = client.post(
        url, {**data, "preview": "yes", "action_token": token, "reward": reward.pk, "deduct_points": "yes"}
    )
    [section] = effect.context["sections"]
    assert (section.totals["points_out"], section.totals["refused"], section.totals["members"]) == (500, 1, 1)
    # the refusal reads as the job's reward_give will word it
    assert section.preview.refused == ["Cannot give $5 off for 500 points: poor@x.example has only 100 available."]
    assert not queued, "the effect page queues nothing"
    confirm = {**dict(effect.context["hidden"]), "_selected_action": [rich.pk, poor.pk], "post": "yes"}
    client.post(url, confirm)
    assert len(queued) == 1 and queued[0]["reward_id"] == reward.pk


def test_import_csv_asks_the_same_question_from_the_command_line(tiers, manager, tmp_path, capsys):
    from django.core.management import call_command

    MemberFactory(email="ann@x.example")
    path = tmp_path / "gift.csv"
    path.write_text("email,points\nann@x.example,600\n")
    with pytest.raises(SystemExit) as done:
        call_command("import_csv", str(path), "--kind", "points", "--change-kind", "goodwill", "--dry-run")
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "+600 / -0 points, 1 members, tiers 0 up and 0 down (its points do not count toward lifetime)" in out
    with pytest.raises(SystemExit):
        call_command("import_csv", str(path), "--kind", "points", "--lifetime", "yes", "--reason", "Correction")
    ann = Member.objects.get(email="ann@x.example")
    assert (ann.available_points, ann.lifetime_points, ann.tier.name) == (600, 600, "Silver")
