"""Effect pages before every bulk or destructive change, tier-safe corrections, and the import check that is the apply
(issue 14 items 1, 2 and 4), in a real browser: one screenshot per step under test-artifacts/e2e/.

Background jobs run where the test says: the test stands in for the worker by calling the service the task calls.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from imports.models import ImportJob, ImportStatus
from imports.services import jobs as job_services
from imports.services.backfill import backfill_run_apply, backfill_run_create
from imports.services.jobs import import_job_apply
from loyalty.actors import SystemActor
from loyalty.models import CustomerGroup, EarnRuleKind, EntrySource, GroupAction, LedgerEntry, Member, ProgramSettings
from loyalty.services import points_adjust
from loyalty.services.groups import group_action_run, group_action_undo, group_static_members_add
from tests.e2e.conftest import sign_in
from tests.factories import EarnRuleFactory, MemberFactory, OrderFactory, TierFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
SYSTEM = SystemActor("tests")


@pytest.fixture
def program(roles):
    """Three Silver members in the static group "Spring VIPs": ann 600, bob 700, cat 145 available (her 455 write-off
    did not count, so her lifetime stays 600). An order way to earn, a sign-up way to earn, two recent orders."""
    TierFactory(name="Bronze", threshold=0)
    TierFactory(name="Silver", threshold=500)
    TierFactory(name="Gold", threshold=2000)
    settings = ProgramSettings.load()
    settings.program_started_at = timezone.now() - timedelta(days=20)
    settings.save()
    EarnRuleFactory(name="Place an order", points_per_currency_unit="1.0000", hold_days=0)
    EarnRuleFactory(name="Sign up", kind=EarnRuleKind.SIGNUP, points=50, points_per_currency_unit=None)
    members = {}
    for email, points in (("ann@shop.example", 600), ("bob@shop.example", 700), ("cat@shop.example", 600)):
        members[email] = MemberFactory(email=email, first_name=email.split("@")[0].title(), signed_up_at=None)
        points_adjust(member=members[email], points=points, reason="Opening balance", actor=SYSTEM)
    points_adjust(
        member=members["cat@shop.example"],
        points=-455,
        reason="Write-off of an old balance",
        actor=SYSTEM,
        counts_toward_lifetime=False,
    )
    group = CustomerGroup.objects.create(name="Spring VIPs", is_static=True)
    group_static_members_add(group=group, text=" ".join(members))
    UserFactory(username="agent-ann").groups.add(roles["agent"])
    UserFactory(username="manager-max").groups.add(roles["manager"])
    return {"group": group, **members}


def figures(email):
    m = Member.objects.select_related("tier").get(email=email)
    return m.available_points, m.lifetime_points, m.tier.name


def effect_totals(page):
    cells = {}
    for name in ("members", "points-in", "points-out", "tiers-up", "tiers-down", "refused"):
        cells[name] = page.locator(f"table.effect-totals td.effect-{name}").first.inner_text()
    return cells


def test_group_action_and_its_undo_show_their_effect_first(page, live_server, program, shot, monkeypatch):
    monkeypatch.setattr("loyalty.services.groups.queue_task", lambda *args, **kwargs: None)  # the worker is the test
    group = program["group"]
    sign_in(page, live_server, "manager-max")
    page.goto(f"{live_server.url}/admin/loyalty/customergroup/")
    page.check(f"input.action-select[value='{group.pk}']")
    page.select_option("select[name=action]", "adjust_group_points")
    page.click("button[name=index]")
    page.wait_for_selector("#id_points")
    page.select_option("#id_apply_type", "relative")
    page.fill("#id_points", "-300")
    page.fill("#id_comment", "Expired promotion")
    page.select_option("#id_change_kind", "write_off")
    assert page.is_checked("input[name=counts_toward_lifetime][value=no]"), "a write-off does not count by default"
    shot(page, "item1-01-group-action-form-asks-about-lifetime")
    page.click("input[type=submit]")
    page.wait_for_selector("table.effect-totals")
    assert effect_totals(page) == {
        "members": "2",
        "points-in": "0",
        "points-out": "-600",
        "tiers-up": "0",
        "tiers-down": "0",
        "refused": "1",
    }
    refusal = "Cannot take 300 points from cat@shop.example: only 145 are available."
    assert refusal in page.inner_text("ul.effect-refusals")
    assert page.locator("table.effect-table tr.refused", has_text="cat@shop.example").count() == 1
    assert not GroupAction.objects.exists(), "the effect page starts nothing"
    shot(page, "item1-02-group-debit-effect-with-the-refused-member")

    page.click("#effect-edit-button")
    page.wait_for_selector("#id_points")
    page.select_option("#id_apply_type", "set")
    page.fill("#id_points", "0")
    page.fill("#id_comment", "Closing the spring programme")
    page.select_option("#id_change_kind", "correction")  # a correction counts: the tiers would follow
    page.click("input[type=submit]")
    page.wait_for_selector("table.effect-totals")
    totals = effect_totals(page)
    assert (totals["points-out"], totals["tiers-down"]) == ("-1,445", "3")
    assert page.locator("table.effect-table tr.tier-down").count() == 3
    shot(page, "item1-03-set-to-zero-as-a-correction-drops-three-tiers")
    page.click("#effect-edit-button")
    page.wait_for_selector("#id_points")
    page.select_option("#id_change_kind", "write_off")
    page.click("input[type=submit]")
    page.wait_for_selector("table.effect-totals")
    totals = effect_totals(page)
    assert (totals["members"], totals["points-out"], totals["tiers-down"]) == ("3", "-1,445", "0")
    assert "does not count toward lifetime" in page.inner_text(".action-summary")
    shot(page, "item1-04-set-to-zero-as-a-write-off-keeps-every-tier")
    page.click("#effect-confirm-button")
    page.wait_for_selector(".messagelist")
    assert "Started 1 group action" in page.inner_text(".messagelist")
    shot(page, "item1-05-group-action-started-once")
    action = GroupAction.objects.get()
    group_action_run(action_id=action.pk)
    assert {figures(e) for e in ("ann@shop.example", "bob@shop.example")} == {(0, 600, "Silver"), (0, 700, "Silver")}
    assert figures("cat@shop.example") == (0, 600, "Silver")

    page.goto(f"{live_server.url}/admin/loyalty/groupaction/{action.pk}/change/")
    page.click("input.danger[value='Undo this action']")
    page.wait_for_selector("table.effect-totals")
    totals = effect_totals(page)
    assert (totals["members"], totals["points-in"], totals["tiers-up"]) == ("3", "+1,445", "0")
    shot(page, "item1-06-undo-this-action-effect")
    token = page.input_value("#effect-confirm input[name=action_token]")
    page.click("#effect-confirm-button")
    page.wait_for_selector(".messagelist")
    assert f"Undoing group action #{action.pk}" in page.inner_text(".messagelist")
    group_action_undo(action_id=action.pk)
    page.go_back()  # the confirmed form sent again (back, and the same form once more): its token acts once
    page.wait_for_selector("#effect-confirm")
    page.evaluate(f"document.querySelector('#effect-confirm input[name=action_token]').value = '{token}'")
    page.click("#effect-confirm-button")
    page.wait_for_selector(".messagelist")
    assert "already submitted" in page.inner_text(".messagelist")
    shot(page, "item1-07-undo-sent-twice-runs-once")
    assert figures("ann@shop.example") == (600, 600, "Silver")


def test_undo_run_and_undo_import_show_their_effect_first(page, live_server, program, shot):
    manager = UserFactory(username="pm-paula", is_superuser=True)
    OrderFactory(
        member=program["bob@shop.example"],
        order_number="#900",
        total="80.00",
        placed_at=timezone.now() - timedelta(days=40),
    )
    run = backfill_run_create(actor=manager, queue=False)
    backfill_run_apply(run_id=run.pk)
    sign_in(page, live_server, "pm-paula")
    page.goto(f"{live_server.url}/admin/imports/backfillrun/{run.pk}/change/")
    page.click("input.danger[value='Undo run']")
    page.wait_for_selector("table.effect-totals")
    totals = effect_totals(page)
    assert (totals["members"], totals["points-out"]) == ("1", "-80")
    assert "bob@shop.example" in page.inner_text("table.effect-table")
    shot(page, "item1-08-undo-run-effect")
    page.click("#effect-confirm-button")
    page.wait_for_selector(".messagelist")
    assert f"Undoing run #{run.pk}" in page.inner_text(".messagelist")
    shot(page, "item1-09-undo-run-confirmed")

    from tests.imports.helpers import applied

    job = applied("email,points\nann@shop.example,1500\n", reason="Gold for the launch", actor=manager)
    assert figures("ann@shop.example") == (2100, 2100, "Gold")
    page.goto(f"{live_server.url}/admin/imports/importjob/{job.pk}/change/")
    page.click("a.deletelink")
    page.wait_for_selector("table.effect-totals")
    totals = effect_totals(page)
    assert (totals["points-out"], totals["tiers-down"]) == ("-1,500", "1")
    assert "Gold" in page.inner_text("table.effect-table") and "Silver" in page.inner_text("table.effect-table")
    shot(page, "item1-10-undo-import-effect-names-the-tier-drop")
    page.click("input.default[value='Yes, undo this import']")
    page.wait_for_selector(".messagelist")
    assert f"Undoing import #{job.pk}" in page.inner_text(".messagelist")
    shot(page, "item1-11-undo-import-confirmed")


def test_new_conversions_start_unticked_with_points_then_show_their_effect(page, live_server, program, shot):
    ann, bob = program["ann@shop.example"], program["bob@shop.example"]
    first = OrderFactory(
        member=ann, order_number="#2001", total="120.00", placed_at=timezone.now() - timedelta(hours=3)
    )
    OrderFactory(member=bob, order_number="#2002", total="45.00", placed_at=timezone.now() - timedelta(hours=2))
    newcomer = MemberFactory(email="dan@shop.example", signed_up_at=timezone.now() - timedelta(days=1))
    sign_in(page, live_server, "agent-ann")
    page.goto(f"{live_server.url}/admin/loyalty/member/new-conversions/")
    boxes = page.locator("#new-conversions input[type=checkbox]")
    assert boxes.count() == 3 and not any(box.is_checked() for box in boxes.all()), "nothing ticked by default"
    assert "+120" in page.inner_text("#new-conversions") and "+45" in page.inner_text("#new-conversions")
    assert "all listed: 215 points" in page.inner_text("#conversions-total")
    shot(page, "item1-12-new-conversions-unticked-with-points")
    page.check(f"input[name=order][value='{first.pk}']")
    page.check(f"input[name=signup][value='{newcomer.pk}']")
    assert page.inner_text("#ticked-points") == "170"
    shot(page, "item1-13-new-conversions-ticked-total")
    page.click("#new-conversions input[type=submit]")
    page.wait_for_selector("table.effect-totals")
    totals = effect_totals(page)
    assert (totals["members"], totals["points-in"], totals["tiers-up"]) == ("2", "+170", "0")
    assert "Reward 2 conversions: 170 points in all" in page.inner_text(".action-summary")
    assert LedgerEntry.objects.filter(reason__contains="2001").count() == 0
    shot(page, "item1-14-new-conversions-effect")
    page.click("#effect-confirm-button")
    page.wait_for_selector(".messagelist")
    assert "Rewarded 2 conversions: 170 points." in page.inner_text(".messagelist")
    shot(page, "item1-15-new-conversions-rewarded")
    assert figures("dan@shop.example")[0] == 50


def test_select_all_adjust_shows_its_effect_before_the_job(page, live_server, program, shot, monkeypatch):
    queued = []
    monkeypatch.setattr("loyalty.admin.jobs.queue", lambda task, **kwargs: queued.append(kwargs))
    sign_in(page, live_server, "manager-max")
    page.goto(f"{live_server.url}/admin/loyalty/member/?q=shop.example")
    page.check("#action-toggle")
    page.evaluate("document.querySelector('input.select-across').value = '1'")  # "Select all N members"
    page.select_option("select[name=action]", "adjust_points")
    page.click("button[name=index]")
    page.wait_for_selector("#id_points")
    assert "every member matching" in page.inner_text(".action-summary")
    page.fill("#id_points", "250")
    page.fill("#id_reason", "Spring goodwill")
    page.select_option("#id_change_kind", "goodwill")
    shot(page, "item1-16-select-all-adjust-form")
    page.click("input[name=confirm]")
    page.wait_for_selector("table.effect-totals")
    totals = effect_totals(page)
    assert (totals["members"], totals["points-in"], totals["tiers-up"]) == ("3", "+750", "0")
    shot(page, "item1-17-select-all-adjust-effect")
    page.click("#effect-confirm-button")
    page.wait_for_selector(".messagelist")
    assert "in the background" in page.inner_text(".messagelist")
    assert len(queued) == 1 and queued[0]["counts"] is False and queued[0]["points"] == 250
    shot(page, "item1-18-select-all-adjust-queued")


def test_a_goodwill_credit_keeps_the_tier_and_the_activity_says_so(page, live_server, program, shot):
    cat = program["cat@shop.example"]
    sign_in(page, live_server, "manager-max")
    page.goto(f"{live_server.url}/admin/loyalty/member/{cat.pk}/adjust-points/")
    page.wait_for_selector("#id_points")
    assert page.is_checked("input[name=counts_toward_lifetime][value=yes]"), "a correction counts by default"
    shot(page, "item2-01-adjust-points-asks-whether-it-counts")
    page.fill("#id_points", "1500")
    page.fill("#id_reason", "Sorry for the broken parcel")
    page.select_option("#id_change_kind", "goodwill")
    assert page.is_checked("input[name=counts_toward_lifetime][value=no]"), "goodwill: the default flips to no"
    shot(page, "item2-02-goodwill-defaults-to-not-counting")
    page.click("input[name=confirm]")
    page.wait_for_selector("#program-activity")
    assert figures("cat@shop.example") == (1645, 600, "Silver"), "1,500 goodwill points: no Gold"
    row = page.locator("#program-activity tr.activity-row", has_text="Sorry for the broken parcel")
    assert "Not toward lifetime: the tier stays" in row.inner_text()
    shot(page, "item2-03-activity-shows-the-choice-tier-kept")

    page.goto(f"{live_server.url}/admin/loyalty/member/{cat.pk}/adjust-points/")
    page.fill("#id_points", "1500")
    page.fill("#id_reason", "Missed order of March, now found")
    page.click("input[name=confirm]")
    page.wait_for_selector("#program-activity")
    assert figures("cat@shop.example") == (3145, 2100, "Gold"), "a correction counts: the tier follows"
    shot(page, "item2-04-a-correction-moves-the-tier")

    page.goto(f"{live_server.url}/admin/loyalty/programsettings/")
    page.wait_for_selector("#id_lifetime_counts_goodwill")
    assert page.is_checked("#id_lifetime_counts_correction") and not page.is_checked("#id_lifetime_counts_goodwill")
    page.locator("#id_lifetime_counts_goodwill").scroll_into_view_if_needed()
    shot(page, "item2-05-program-settings-defaults-per-kind-of-change")


def test_import_check_is_the_apply_with_totals_and_the_lifetime_choice(page, live_server, program, shot, monkeypatch):
    queued = []
    queue = job_services._queue

    def hold_the_apply(task_name, job_id):  # the check runs as usual; the worker that applies is the test
        if task_name == "apply_import_job":
            queued.append(job_id)
        else:
            queue(task_name, job_id)

    monkeypatch.setattr(job_services, "_queue", hold_the_apply)
    sign_in(page, live_server, "manager-max")
    page.goto(f"{live_server.url}/admin/imports/importjob/add/")
    page.select_option("#id_kind", "points")
    page.fill("#id_reason", "Spring corrections")
    page.select_option("#id_change_kind", "write_off")
    assert page.is_checked("input[name=counts_toward_lifetime][value=no]")
    csv = (
        b"email,points\n"
        b"ann@shop.example,1500\n"
        b"cat@shop.example,-99999\n"
        b"bob@shop.example,-200\n"
        b"cat@shop.example,-100\n"
        b"nobody@shop.example,5\n"
    )
    page.set_input_files("#id_file", files=[{"name": "spring.csv", "mimeType": "text/csv", "buffer": csv}])
    shot(page, "item2-06-upload-asks-whether-the-file-counts")
    page.click("input[type=submit]")
    page.wait_for_selector("#preview-totals")
    job = ImportJob.objects.get()
    assert job.status == ImportStatus.CHECKED and job.counts_toward_lifetime is False
    assert page.inner_text("#to-apply") == "3" and page.inner_text("#problem-rows") == "2"
    problems = page.inner_text("#problems")
    assert "Cannot take 99,999 points from cat@shop.example: only 145 are available." in problems
    assert page.inner_text("#points-in") == "+1,500" and page.inner_text("#points-out") == "-300"
    assert page.inner_text("#members-affected") == "3"
    assert (page.inner_text("#tiers-up"), page.inner_text("#tiers-down")) == ("0", "0"), "a write-off file: no moves"
    shot(page, "item4-10-check-refuses-what-apply-refuses-with-totals")
    page.click("#import-job input.default")
    page.wait_for_selector("#job-progress")
    import_job_apply(job_id=job.pk)  # what the worker does with the queued task
    page.wait_for_selector("#summary", timeout=15_000)
    summary = page.inner_text("#summary")
    assert "Rows applied\t3" in summary and "Rows failed\t2" in summary
    assert "Points credited\t1,500" in summary and "Points debited\t300" in summary
    shot(page, "item4-11-apply-did-what-the-check-said")
    assert figures("ann@shop.example") == (2100, 600, "Silver")
    assert LedgerEntry.objects.filter(source=EntrySource.IMPORT, counts_toward_lifetime=False).count() == 3

    page.goto(f"{live_server.url}/admin/imports/importjob/add/")
    page.select_option("#id_kind", "points")
    page.fill("#id_reason", "Launch bonus")
    page.set_input_files(
        "#id_file",
        files=[{"name": "launch.csv", "mimeType": "text/csv", "buffer": b"email,points\nbob@shop.example,1400\n"}],
    )
    page.click("input[type=submit]")
    page.wait_for_selector("#preview-totals")
    assert page.inner_text("#tiers-up") == "1", "a correction file that counts shows the tier it will move"
    shot(page, "item4-12-check-shows-the-tier-move-up")


def test_select_all_on_entries_and_give_reward_show_the_jobs_effect(page, live_server, program, shot, monkeypatch):
    from loyalty.services import points_earn
    from tests.factories import RewardFactory

    queued = []
    monkeypatch.setattr("loyalty.admin.jobs.queue", lambda task, **kwargs: queued.append(kwargs))
    for email in ("ann@shop.example", "bob@shop.example"):
        points_earn(
            member=program[email],
            points=1500,
            reason="Big order",
            actor=SYSTEM,
            source="admin",
            hold_until=timezone.now() + timedelta(days=5),
        )
    sign_in(page, live_server, "manager-max")
    page.goto(f"{live_server.url}/admin/loyalty/ledgerentry/?status__exact=pending")
    page.check("#action-toggle")
    page.evaluate("document.querySelector('input.select-across').value = '1'")  # "Select all N entries"
    page.select_option("select[name=action]", "approve_pending")
    page.click("button[name=index]")
    page.wait_for_selector("table.effect-totals")
    totals = effect_totals(page)
    assert (totals["members"], totals["tiers-up"], totals["refused"]) == ("2", "2", "0")
    assert LedgerEntry.objects.filter(status="pending").count() == 2
    shot(page, "item1-19-select-all-approve-shows-the-jobs-effect")

    reward = RewardFactory(name="$5 off", points_cost=500)
    page.goto(f"{live_server.url}/admin/loyalty/member/?q=shop.example")
    page.check("#action-toggle")
    page.evaluate("document.querySelector('input.select-across').value = '1'")
    page.select_option("select[name=action]", "give_reward")
    page.click("button[name=index]")
    page.wait_for_selector("#id_reward")
    page.select_option("#id_reward", str(reward.pk))
    page.click("input[name=confirm]")
    page.wait_for_selector("table.effect-totals")
    totals = effect_totals(page)
    assert (totals["members"], totals["points-out"], totals["refused"]) == ("2", "-1,000", "1")
    # Worded as the job's reward_give will refuse it, not as a debit
    assert "points: cat@shop.example has only 145 available." in page.inner_text("ul.effect-refusals")
    shot(page, "item1-20-select-all-give-reward-effect-with-refusal")
    page.click("#effect-confirm-button")
    page.wait_for_selector(".messagelist")
    assert len(queued) == 1
    shot(page, "item1-21-select-all-give-reward-queued")
