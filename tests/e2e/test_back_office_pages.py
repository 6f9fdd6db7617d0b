"""The back office's pages in a real browser, one screenshot per step under test-artifacts/e2e/ (issue 14).

Names start with the issue's item: item3 (reverse where the entry is), item4 (the import job page), item5 (a fresh
install that looks alive), item6 (polish). Background jobs here run where the test says: the test stands in for the
worker by calling the service the task calls, so each page is seen while its job waits, and after it ends.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from imports.models import ImportJob, ImportStatus
from imports.services import jobs as job_services
from imports.services.backfill import backfill_run_apply, backfill_run_create
from imports.services.jobs import import_job_apply
from loyalty.actors import SystemActor
from loyalty.keys import order_earning_key
from loyalty.models import CustomerGroup, EntryStatus, LedgerEntry, Member, ProgramSettings
from loyalty.services import points_adjust, points_earn, reward_give
from loyalty.services.groups import group_action_create, group_action_run
from loyalty.services.rfm import rfm_refresh
from tests.e2e.conftest import sign_in
from tests.factories import EarnRuleFactory, MemberFactory, OrderFactory, RewardFactory, TierFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
SYSTEM = SystemActor("tests")


@pytest.fixture
def store(roles):
    """Ann: +300 welcome, +200 late delivery, a $5-off coupon (150), an order earning 120 in its return window."""
    TierFactory(name="Bronze", threshold=0)
    TierFactory(name="Silver", threshold=500)
    ProgramSettings.load()
    rule = EarnRuleFactory(name="Place an order", points_per_currency_unit="1.0000", hold_days=14)
    ann = MemberFactory(email="ann@shop.example", first_name="Ann", last_name="Archer")
    points_adjust(member=ann, points=300, reason="Welcome bonus", actor=SYSTEM)
    points_adjust(member=ann, points=200, reason="Late delivery", actor=SYSTEM)
    reward_give(member=ann, reward=RewardFactory(name="$5 off", points_cost=150), deduct_points=True, actor=SYSTEM)
    order = OrderFactory(member=ann, order_number="#1001", total="120.00", placed_at=timezone.now() - timedelta(days=2))
    points_earn(
        member=ann,
        points=120,
        reason="Order #1001",
        actor=SYSTEM,
        source="order",
        source_ref=order.pk,
        earn_rule=rule,
        idempotency_key=order_earning_key(order.pk, rule.pk),
        hold_until=timezone.now() + timedelta(days=12),
    )
    UserFactory(username="agent-ann").groups.add(roles["agent"])
    UserFactory(username="manager-max").groups.add(roles["manager"])
    return Member.objects.get(pk=ann.pk)


def open_member(page, live_server, member):
    page.goto(f"{live_server.url}/admin/loyalty/member/{member.pk}/change/")
    page.wait_for_selector("#program-activity")


def activity_row(page, reason):
    return page.locator("#program-activity tr.activity-row", has_text=reason)


def test_agent_reverses_and_approves_from_the_members_activity(page, live_server, store, shot):
    ann = store
    sign_in(page, live_server, "agent-ann")
    open_member(page, live_server, ann)
    assert activity_row(page, "Late delivery").locator("a.entry-reverse-link").count() == 1
    pending = activity_row(page, "Order #1001")
    assert pending.locator("td.entry-actions a").all_inner_texts() == ["Reverse", "Approve", "Reject"]
    assert pending.locator("a", has_text="Shopify #1001").count() == 1, "the source names the order as the store does"
    assert "Pending: available on" in pending.locator("td.entry-status").inner_text()
    shot(page, "item3-01-activity-with-reverse-approve-reject")

    activity_row(page, "Late delivery").locator("a.entry-reverse-link").click()
    page.wait_for_selector("#action-confirmation")
    row = page.locator("table.action-preview tbody tr")
    assert row.locator("td").all_inner_texts()[6:] == ["350", "150", "A reversal entry of -200 points."]
    shot(page, "item3-02-reverse-preview-from-the-activity")
    page.fill("#id_reason", "Parcel arrived after all")
    page.click("input[name=confirm]")
    page.wait_for_selector(".messagelist")
    assert "Reversed 1 entry (-200 points)." in page.inner_text(".messagelist")
    assert page.url.endswith(f"/admin/loyalty/member/{ann.pk}/change/")
    assert page.inner_text(".figure-available") == "150"
    assert activity_row(page, "Late delivery").first.locator("a.entry-reverse-link").count() == 0
    shot(page, "item3-03-reversed-back-on-the-member")

    activity_row(page, "Order #1001").locator("a.entry-approve-link").click()
    page.wait_for_selector("#action-confirmation")
    assert "The points become available now." in page.inner_text("table.action-preview")
    shot(page, "item3-04-approve-preview")
    page.click("input[name=confirm]")
    page.wait_for_selector(".messagelist")
    assert "Approved 1 pending entry: 120 points now available." in page.inner_text(".messagelist")
    assert page.inner_text(".figure-available") == "270"
    shot(page, "item3-05-approved")


def test_entry_list_preview_walks_one_members_rows_in_order_and_marks_the_refusal(page, live_server, store, shot):
    ann = store
    welcome = LedgerEntry.objects.get(member=ann, reason="Welcome bonus")
    late = LedgerEntry.objects.get(member=ann, reason="Late delivery")
    sign_in(page, live_server, "agent-ann")
    page.goto(f"{live_server.url}/admin/loyalty/ledgerentry/?q=ann@shop.example")
    for entry in (welcome, late):
        page.check(f"input.action-select[value='{entry.pk}']")
    page.select_option("select[name=action]", "reverse_conversion")
    page.click("button[name=index]")
    page.wait_for_selector("#action-confirmation")
    first, second = page.locator("table.action-preview tbody tr").all()
    assert first.locator("td").all_inner_texts()[6:8] == ["350", "50"]
    refusal = "Cannot reverse: 200 points were credited but only 50 are available."
    assert second.locator("td").all_inner_texts()[6:] == ["50", "50", refusal]
    assert second.get_attribute("class") == "refused"
    assert "1 will be refused (marked below)" in page.inner_text(".action-summary")
    shot(page, "item3-06-preview-in-order-with-the-refused-row")
    page.fill("#id_reason", "Both were mistakes")
    page.click("input[name=confirm]")
    page.wait_for_selector(".messagelist")
    assert refusal in page.inner_text(".messagelist")
    shot(page, "item3-07-refusal-reported-as-previewed")


def test_import_job_page_follows_the_check_and_the_apply_without_a_reload(page, live_server, store, shot, monkeypatch):
    """The page script used to find <body class="... import-job"> first and never poll."""
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
    page.fill("#id_reason", "Spring campaign")
    page.set_input_files(
        "#id_file",
        files=[{"name": "spring.csv", "mimeType": "text/csv", "buffer": b"email,points\nann@shop.example,40\n"}],
    )
    page.click("input[type=submit]")
    page.wait_for_selector("#preview")
    shot(page, "item4-01-checked-preview")
    page.click("#import-job input.default")
    page.wait_for_selector("#job-progress")
    job = ImportJob.objects.get()
    assert queued == [job.pk] and job.status == ImportStatus.APPLYING
    assert page.inner_text("#job-progress-text") == "0 / 1 rows"
    page.evaluate("window.loadedOnce = true")  # a reload would drop it
    page.wait_for_function("document.getElementById('job-status').textContent === 'Applying'")
    shot(page, "item4-02-applying-waiting-for-the-worker")

    import_job_apply(job_id=job.pk)  # what the worker does with the queued task
    page.wait_for_selector("#summary", timeout=15_000)  # the page saw the job end and reloaded itself
    assert page.inner_text("#job-status") == "Applied"
    assert "Rows applied\t1" in page.inner_text("#summary")
    shot(page, "item4-03-applied-summary-after-live-update")


def test_reuploads_link_to_each_other_the_right_way(page, live_server, store, shot):
    sign_in(page, live_server, "manager-max")
    for reason in ("First upload", "Same file again"):
        page.goto(f"{live_server.url}/admin/imports/importjob/add/")
        page.select_option("#id_kind", "points")
        page.fill("#id_reason", reason)
        page.set_input_files(
            "#id_file",
            files=[{"name": "gift.csv", "mimeType": "text/csv", "buffer": b"email,points\nann@shop.example,5\n"}],
        )
        page.click("input[type=submit]")
        page.wait_for_selector("#preview")
    first, second = ImportJob.objects.order_by("pk")
    assert f"This file was uploaded before as job {first.pk}" in page.inner_text("#previous-upload")
    shot(page, "item4-04-later-job-names-the-earlier")
    page.click("a.previous-upload")
    page.wait_for_selector("#later-uploads")
    assert page.locator("#previous-upload").count() == 0
    assert f"job {second.pk}" in page.inner_text("#later-uploads")
    shot(page, "item4-05-earlier-job-names-the-later")


def test_group_action_and_reward_past_actions_pages_update_live(page, live_server, store, shot, monkeypatch):
    monkeypatch.setattr("loyalty.services.groups.queue_task", lambda *args, **kwargs: None)  # the worker is the test
    manager = UserFactory(username="pm-paula", is_superuser=True)
    group = CustomerGroup.objects.create(name="Everyone")
    action = group_action_create(group=group, apply_type="relative", points=25, comment="Thank you", actor=manager)
    sign_in(page, live_server, "pm-paula")
    page.goto(f"{live_server.url}/admin/loyalty/groupaction/{action.pk}/change/")
    page.wait_for_selector("#job-progress")
    assert "Queued" in page.inner_text("#job-progress-text")
    assert page.locator("input[name=_save]").count() == 0, "a group action is a record: nothing to save"
    shot(page, "item4-06-group-action-queued-no-save-buttons")
    listing = page.context.new_page()  # the group actions list, open beside the action's page
    listing.goto(f"{live_server.url}/admin/loyalty/groupaction/")
    assert listing.locator("#result_list progress[data-status-url]").count() == 1
    group_action_run(action_id=action.pk)
    page.wait_for_selector("input.danger[value='Undo this action']")  # the page saw the end and reloaded itself
    assert page.inner_text("#job-progress-text").startswith("Done")
    listing.wait_for_function("!document.querySelector('#result_list progress[data-status-url]')")
    assert listing.locator("#result_list progress").get_attribute("value") == "100"
    shot(listing, "item4-07b-group-actions-list-updated-live")
    shot(page, "item4-07-group-action-done-live")

    settings = ProgramSettings.load()
    settings.program_started_at = timezone.now()
    settings.save()
    OrderFactory(member=store, order_number="#900", total="80.00", placed_at=timezone.now() - timedelta(days=40))
    run = backfill_run_create(actor=manager, queue=False)
    page.goto(f"{live_server.url}/admin/imports/backfillrun/{run.pk}/change/")
    page.wait_for_selector("#job-progress")
    assert page.inner_text("td.gives") == "1 point per $1"
    shot(page, "item4-08-reward-past-actions-queued")
    backfill_run_apply(run_id=run.pk)
    page.wait_for_selector("input.danger[value='Undo run']")  # the page saw the end and reloaded itself
    # Order #1001 earned already (the same key): only the older order is credited.
    assert "0 members and 1 orders credited, 80 points" in page.inner_text("#job-progress-text")
    shot(page, "item4-09-reward-past-actions-done-live")


def test_a_fresh_program_looks_alive_and_reads_well(page, live_server, store, shot):
    rfm_refresh()  # what seed_demo now leaves behind
    ann = store
    sign_in(page, live_server, "agent-ann")
    open_member(page, live_server, ann)
    assert page.locator("#member-figures").count() == 1 and page.locator(".field-available_points").count() == 0
    coupon = page.locator("#member-coupons tr.coupon-row")
    assert coupon.locator("td.coupon-reward").inner_text() == "$5 off"
    assert coupon.locator("td.coupon-status").inner_text() == "Active"
    assert "Shopify #1001" in page.inner_text("#member-orders") and "$120.00" in page.inner_text("#member-orders")
    shot(page, "item5-01-member-page-points-once-coupons-available-on")

    page.goto(f"{live_server.url}/admin/loyalty/ledgerentry/?status__exact=pending")
    assert "Pending: available on" in page.inner_text("#result_list")
    filters = [title.strip() for title in page.locator("#changelist-filter summary").all_inner_texts()]
    assert "By staff member" in filters and "By date" in filters and "By by" not in filters
    shot(page, "item5-02-entries-pending-available-on-and-filter-titles")

    page.goto(f"{live_server.url}/admin/loyalty/customergroup/")
    assert "RFM scores last updated" in page.inner_text("#rfm-refreshed")
    shot(page, "item5-03-groups-say-when-rfm-scores-were-updated")

    page.goto(f"{live_server.url}/admin/loyalty/earnrule/")
    assert page.inner_text("td.field-gives") == "1 point per $1"
    shot(page, "item6-01-ways-to-earn-with-units")

    page.goto(f"{live_server.url}/admin/loyalty/member/")
    page.check(f"input.action-select[value='{ann.pk}']")
    page.select_option("select[name=action]", "adjust_points")
    page.click("button[name=index]")
    page.wait_for_selector("#action-confirmation")
    page.fill("#id_points", "30")
    cells = page.locator("table.action-preview tbody tr td").all_inner_texts()
    assert cells[5:] == ["Silver", "380"], "the Tier stays; Available after has its own column"
    shot(page, "item6-02-action-page-tier-and-available-after")

    # A refusal: the agent opens the group actions, which need a program manager.
    page.goto(f"{live_server.url}/admin/loyalty/groupaction/")
    assert "It needs the permission “Can view group action”" in page.inner_text("#permission-refused")
    assert "the Program manager role" in page.inner_text("#permission-refused")
    shot(page, "item6-03-refusal-page-names-permission-and-holders")


def test_undo_import_button_is_readable(page, live_server, store, shot):
    from tests.imports.helpers import applied

    job = applied("email,points\nann@shop.example,5\n", reason="Gift")
    sign_in(page, live_server, "manager-max")
    page.goto(f"{live_server.url}/admin/imports/importjob/{job.pk}/change/")
    undo = page.locator("a.deletelink", has_text="Undo import")
    colours = undo.evaluate("el => [getComputedStyle(el).color, getComputedStyle(el).backgroundColor]")
    assert colours[0] == "rgb(255, 255, 255)" and colours[1] != "rgb(65, 118, 144)", colours  # white on the red
    shot(page, "item6-04-import-job-undo-button-readable")
    assert LedgerEntry.objects.filter(status=EntryStatus.ACTIVE, reason="Gift").count() == 1
