"""A support agent's and a program manager's day in the back office, in a real browser."""

from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.actors import SystemActor
from loyalty.models import Coupon, LedgerEntry, Member, ProgramSettings
from loyalty.services import points_adjust, points_earn
from tests.e2e.conftest import sign_in
from tests.factories import MemberFactory, RewardFactory, TierFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
SYSTEM = SystemActor("tests")


@pytest.fixture
def store(roles):
    TierFactory(name="Bronze", threshold=0)
    TierFactory(name="Silver", threshold=500)
    ProgramSettings.load()
    RewardFactory(name="Free shipping", points_cost=300)
    ann = MemberFactory(email="ann@shop.example", first_name="Ann", last_name="Archer")
    MemberFactory(email="bob@shop.example", first_name="Bob", last_name="Baker")
    points_adjust(member=ann, points=400, reason="Welcome bonus", actor=SYSTEM)
    agent = UserFactory(username="agent-ann")
    agent.groups.add(roles["agent"])
    manager = UserFactory(username="manager-max")
    manager.groups.add(roles["manager"])
    return ann


def open_member(page, live_server, email):
    page.goto(f"{live_server.url}/admin/loyalty/member/")
    page.fill("#searchbar", email)
    page.press("#searchbar", "Enter")
    page.click(f"#result_list a:text('{email}')")
    page.wait_for_selector("#program-activity")


def run_action(page, action, checkbox_values):
    for value in checkbox_values:
        page.check(f"input.action-select[value='{value}']")
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")
    page.wait_for_selector("#action-confirmation")


def test_support_agent_adjusts_gives_a_reward_reverses_and_cannot_change_settings(page, live_server, store, shot):
    ann = store
    sign_in(page, live_server, "agent-ann")

    # Find the member and adjust her points.
    open_member(page, live_server, "ann@shop.example")
    assert page.inner_text(".figure-available") == "400"
    page.click("a.adjust-points-link")
    page.fill("#id_points", "250")
    page.fill("#id_reason", "Late delivery")
    assert page.inner_text("table.action-preview tbody tr td:last-child") == "650"  # available after
    page.click("input[name=confirm]")
    page.wait_for_selector(".messagelist")
    assert "Adjusted 1 member: +250." in page.inner_text(".messagelist")
    assert page.inner_text(".figure-available") == "650"
    assert "Late delivery" in page.inner_text("#program-activity")
    assert page.inner_text(".figure-tier") == "Silver"
    shot(page, "agent-01-adjusted-points")

    # Give a reward and see the coupon.
    page.click("a.give-reward-link")
    page.select_option("#id_reward", label="Free shipping (300 points)")
    page.check("input[name=deduct_points][value=yes]")
    assert page.inner_text("table.action-preview tbody tr td:last-child") == "350"
    page.click("input[name=confirm]")
    page.wait_for_selector(".messagelist")
    assert "Gave Free shipping to 1 member (300 points deducted)." in page.inner_text(".messagelist")
    code = Coupon.objects.get(member=ann).code
    assert code in page.inner_text("#member-coupons")
    assert page.inner_text(".figure-available") == "350"
    shot(page, "agent-02-gave-reward")

    # Reverse the wrongly credited welcome bonus? Its 400 points are partly spent: refused with the numbers.
    welcome = LedgerEntry.objects.get(member=ann, reason="Welcome bonus")
    page.goto(f"{live_server.url}/admin/loyalty/ledgerentry/?q=ann@shop.example")
    run_action(page, "reverse_conversion", [welcome.pk])
    page.fill("#id_reason", "Duplicate bonus")
    page.click("input[name=confirm]")
    page.wait_for_selector(".messagelist")
    assert "Cannot reverse: 400 points were credited but only 350 are available." in page.inner_text(".messagelist")
    # The late-delivery adjustment can be reversed.
    late = LedgerEntry.objects.get(member=ann, reason="Late delivery")
    run_action(page, "reverse_conversion", [late.pk])
    page.fill("#id_reason", "Parcel arrived after all")
    page.click("input[name=confirm]")
    page.wait_for_selector(".messagelist")
    assert "Reversed 1 entry (-250 points)." in page.inner_text(".messagelist")
    assert Member.objects.get(pk=ann.pk).available_points == 100
    shot(page, "agent-03-reversed-entry")

    # Settings: the agent sees them, cannot save them, and a forged POST is refused by the server.
    page.goto(f"{live_server.url}/admin/loyalty/programsettings/")
    page.wait_for_selector("#content")
    assert page.locator("input[name=_save]").count() == 0
    # With a valid CSRF token, so the 403 comes from the permission check and not from CSRF protection.
    csrf_token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    settings_url = f"{live_server.url}/admin/loyalty/programsettings/1/change/"
    refused = page.request.post(
        settings_url,
        form={"program_name": "Hacked", "support_agent_limit": "999999", "csrfmiddlewaretoken": csrf_token},
        headers={"X-CSRFToken": csrf_token, "Referer": settings_url},
    )
    assert refused.status == 403
    assert "CSRF" not in refused.text(), "refused by CSRF protection, not by the permission check"
    assert ProgramSettings.load().support_agent_limit == 1000
    shot(page, "agent-04-settings-read-only")


def test_program_manager_approves_pending_points(page, live_server, store, shot):
    ann = store
    waiting = points_earn(
        member=ann,
        points=120,
        reason="Order 1001",
        actor=SYSTEM,
        source="order",
        hold_until=timezone.now() + timedelta(days=14),
    ).entry
    sign_in(page, live_server, "manager-max")
    page.goto(f"{live_server.url}/admin/loyalty/ledgerentry/?status__exact=pending")
    run_action(page, "approve_pending", [waiting.pk])
    assert "Approve pending points: 1 entry." in page.inner_text("#action-confirmation")
    page.click("input[name=confirm]")
    page.wait_for_selector(".messagelist")
    assert "Approved 1 pending entry: 120 points now available." in page.inner_text(".messagelist")
    ann.refresh_from_db()
    assert (ann.available_points, ann.pending_points) == (520, 0)
    shot(page, "manager-01-approved-pending")


def test_customer_group_list_fills_in_each_groups_live_count(page, live_server, store, shot):
    from loyalty.models import AccountFilter, CustomerGroup

    MemberFactory(email="guest@shop.example", signed_up_at=None)  # so the two groups differ
    everyone = CustomerGroup.objects.create(name="Everyone")
    named = CustomerGroup.objects.create(name="Accounts", account=AccountFilter.ACCOUNT)
    expected = Member.objects.filter(signed_up_at__isnull=False).count()
    assert expected < Member.objects.count()
    sign_in(page, live_server, "manager-max")
    page.goto(f"{live_server.url}/admin/loyalty/customergroup/")
    for group, count in ((everyone, Member.objects.count()), (named, expected)):
        link = page.locator(f"a[data-member-count-url$='/{group.pk}/member-count/']")
        page.wait_for_function("(el) => el.textContent !== '…'", arg=link.element_handle())
        assert link.inner_text() == f"{count:,}"
    shot(page, "manager-02-group-counts")
