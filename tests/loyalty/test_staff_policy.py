"""One staff policy, in the services: every path a staff member changes points by meets the same permission, the
support agents' per-action limit and their daily total. Each test is one of the faults found on the old main."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from imports.models import ImportRowProblem, ImportStatus
from loyalty.actors import SystemActor
from loyalty.errors import LoyaltyError
from loyalty.models import (
    Coupon,
    CustomerGroup,
    EarnRule,
    EarnRuleKind,
    GroupAction,
    LedgerEntry,
    Member,
    ProgramSettings,
)
from loyalty.services import entries_reverse_bulk, entry_reverse, points_adjust, reward_give
from loyalty.services.conversions import conversion_credit, conversions_reward, new_conversions
from loyalty.services.members import member_create
from loyalty.services.orders import OrderFacts, order_apply
from tests.admin.conftest import member_with
from tests.factories import MemberFactory, OrderFactory, RewardFactory
from tests.imports.helpers import applied

pytestmark = pytest.mark.django_db
SYSTEM = SystemActor("tests")


@pytest.fixture
def limits(tiers):
    ProgramSettings.objects.update_or_create(pk=1, defaults={"support_agent_limit": 1000})


@pytest.fixture
def order_rule(db):
    return EarnRule.objects.create(name="Place an order", kind=EarnRuleKind.ORDER, points_per_currency_unit=1)


def test_an_agent_cannot_credit_ten_million_points_by_email(limits, agent):
    ann = member_with(0, email="ann@shop.example")
    with pytest.raises(LoyaltyError, match="more than 1,000 points need a program manager: this one is 10,000,000"):
        conversion_credit(actor=agent, reason="Referral", email="ann@shop.example", points=10_000_000)
    assert not LedgerEntry.objects.filter(member=ann).exists()


def test_add_conversion_page_refuses_an_agent_above_the_limit(limits, agent_client):
    member_with(0, email="bo@shop.example")
    page = agent_client.get("/admin/loyalty/member/add-conversion/")
    token = page.context["form"]["action_token"].value()
    done = agent_client.post(
        "/admin/loyalty/member/add-conversion/",
        {"email": "bo@shop.example", "points": "10000000", "reason": "Referral", "action_token": token},
    )
    assert "more than 1,000 points need a program manager" in done.content.decode()
    assert Member.objects.get(email="bo@shop.example").available_points == 0


def test_an_agent_cannot_reverse_a_managers_large_debit(limits, agent, manager):
    ann = member_with(60_000)
    debit = points_adjust(member=ann, points=-50_000, reason="Fraud", actor=manager).entry
    with pytest.raises(LoyaltyError, match="this one is 50,000 points"):
        entry_reverse(entry=debit, reason="Oops", actor=agent)
    with pytest.raises(LoyaltyError, match="this one is 50,000 points"):
        result = entries_reverse_bulk(entry_ids=[debit.pk], reason="Oops", actor=agent, source="admin")
        raise LoyaltyError(result.refused[0][1])
    ann.refresh_from_db()
    assert ann.available_points == 10_000


@pytest.mark.parametrize("path", ["single", "bulk"])
def test_reversing_a_redemption_gives_the_points_back_and_disables_its_coupon(limits, agent, path):
    ann = member_with(800)
    coupon = reward_give(member=ann, reward=RewardFactory(points_cost=500), deduct_points=True, actor=agent)
    if path == "single":
        entry_reverse(entry=coupon.redemption_entry, reason="Wrong reward", actor=agent)
    else:
        entries_reverse_bulk(entry_ids=[coupon.redemption_entry_id], reason="Wrong reward", actor=agent, source="admin")
    ann.refresh_from_db()
    coupon.refresh_from_db()
    assert ann.available_points == 800 and coupon.disabled and coupon.disabled_at is not None


def test_new_conversions_credits_only_what_it_lists(limits, agent, order_rule):
    buyer = member_with(0)
    kinds = {
        "cancelled": OrderFactory(member=buyer, cancelled=True),
        "test": OrderFactory(member=buyer, test=True),
        "unpaid": OrderFactory(member=buyer, financial_status="pending"),
    }
    guest = member_create(email="guest@shop.example")
    EarnRule.objects.create(name="Sign up", kind=EarnRuleKind.SIGNUP, points=200)
    listed = new_conversions()
    assert not set(kinds.values()) & set(listed.orders) and guest not in listed.signups
    done = conversions_reward(actor=agent, order_ids=[o.pk for o in kinds.values()], member_ids=[guest.pk])
    assert done.credited == 0 and len(done.refused) == 4
    assert all("not a new conversion" in refusal for refusal in done.refused)
    assert not LedgerEntry.objects.exists()


def test_new_conversions_does_not_list_the_demo_orders_and_rewards_an_order_once(tiers, agent):
    call_command("seed_demo", members=20, entries_per_member=3, quiet=True)
    ProgramSettings.objects.filter(pk=1).update(program_started_at=timezone.now() - timedelta(days=60))
    demo_orders = set(LedgerEntry.objects.filter(source="order").values_list("source_ref", flat=True))
    assert demo_orders and not demo_orders & {o.pk for o in new_conversions().orders}
    fresh = OrderFactory(member=Member.objects.filter(signed_up_at__isnull=False).first(), total=120)
    fresh.earnable_amount = 120
    fresh.save()
    assert fresh in new_conversions().orders
    assert conversions_reward(actor=agent, order_ids=[fresh.pk]).credited == 1
    again = conversions_reward(actor=agent, order_ids=[fresh.pk])
    assert again.credited == 0 and LedgerEntry.objects.filter(source_ref=fresh.pk, source="order").count() == 1
    assert fresh not in new_conversions().orders


def test_a_group_action_form_sent_twice_starts_one_action(manager_client, tiers, django_capture_on_commit_callbacks):
    group = CustomerGroup.objects.create(name="Everyone")
    MemberFactory()
    form = {
        "action": "adjust_group_points",
        "_selected_action": [str(group.pk)],
        "post": "yes",
        "apply_type": "relative",
        "points": "50",
        "comment": "Thanks",
        "action_token": "the-same-form",
    }
    with django_capture_on_commit_callbacks(execute=True):
        manager_client.post("/admin/loyalty/customergroup/", form)
        again = manager_client.post("/admin/loyalty/customergroup/", form, follow=True)
    assert GroupAction.objects.count() == 1
    assert any("sent before" in str(m) for m in again.context["messages"])
    assert set(Member.objects.values_list("available_points", flat=True)) == {50}


def test_the_daily_total_holds_across_actions(tiers, agent):
    ProgramSettings.objects.update_or_create(
        pk=1, defaults={"support_agent_limit": 1000, "support_agent_daily_limit": 1500}
    )
    ann, bo = member_with(0), member_with(0)
    points_adjust(member=ann, points=900, reason="Goodwill", actor=agent)
    with pytest.raises(LoyaltyError, match="at most 1,500 points a day: 900 moved today, this would make 1,800"):
        points_adjust(member=bo, points=900, reason="Goodwill", actor=agent)
    points_adjust(member=bo, points=600, reason="Goodwill", actor=agent)
    bo.refresh_from_db()
    assert bo.available_points == 600


def test_members_created_by_any_path_start_in_the_same_tier(tiers, django_capture_on_commit_callbacks):
    imported = applied("email,signed_up_at\nimp@shop.example,2024-01-01T00:00:00Z\n", kind="members")
    assert imported.status == ImportStatus.APPLIED
    order_apply(
        facts=OrderFacts(
            store="shopify", store_order_id="77", total=10, placed_at=timezone.now(), email="buyer@shop.example"
        ),
        actor=SYSTEM,
    )
    tiers_of = dict(Member.objects.values_list("email", "tier__name"))
    assert tiers_of["imp@shop.example"] == tiers_of["buyer@shop.example"] == "Bronze"


def test_an_import_applied_by_an_agent_is_held_to_the_limit_row_by_row(limits, agent, tmp_path):
    agent.user_permissions.add(*_permissions("imports.add_importjob", "imports.apply_importjob"))
    member_with(0, email="ann@shop.example")
    csv = tmp_path / "points.csv"
    csv.write_text("email,points\nann@shop.example,500\nann@shop.example,5000\n")
    with pytest.raises(SystemExit):
        call_command("import_csv", str(csv), kind="points", **{"as": agent.username})
    assert Member.objects.get(email="ann@shop.example").available_points == 500
    problem = ImportRowProblem.objects.get()
    assert (problem.row_number, problem.phase) == (3, "apply")
    assert "more than 1,000 points need a program manager" in problem.reason


def test_import_csv_as_a_user_who_may_not_apply_imports_is_refused(limits, agent, tmp_path):
    member_with(0, email="ann@shop.example")
    csv = tmp_path / "points.csv"
    csv.write_text("email,points\nann@shop.example,5\n")
    with pytest.raises(CommandError, match="may not apply imports"):
        call_command("import_csv", str(csv), kind="points", **{"as": agent.username})
    assert Member.objects.get(email="ann@shop.example").available_points == 0


def _permissions(*names):
    from django.contrib.auth.models import Permission

    found = []
    for name in names:
        app, codename = name.split(".")
        found.append(Permission.objects.get(content_type__app_label=app, codename=codename))
    return found


def test_a_staff_member_without_the_permission_is_refused_by_the_service(tiers):
    from tests.factories import UserFactory

    clerk = UserFactory()  # staff, but in no role
    with pytest.raises(LoyaltyError, match="may not adjust points"):
        points_adjust(member=member_with(0), points=5, reason="x", actor=clerk)
    assert not Coupon.objects.exists()
