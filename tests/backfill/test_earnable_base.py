"""Every path that credits an order earns on the live earning's base: Reward past actions and New conversions (the
orders CSV keeps the parts: tests/imports/test_other_kinds.py). Goods after discounts by default; tax and shipping
where the program says; less what refunds returned."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from imports.services import backfill as service
from loyalty.models import Order, OrderRefund, ProgramSettings
from loyalty.services.conversions import conversions_reward
from tests.factories import EarnRuleFactory, MemberFactory, OrderFactory

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def program_reverts(db):
    ProgramSettings.load()
    ProgramSettings.objects.filter(pk=1).update(
        revert_enabled=True, revert_on_partially_refunded=True, program_started_at=timezone.now() - timedelta(days=365)
    )


@pytest.fixture
def started(db):
    """New conversions lists orders placed since the program started (and in the last 30 days)."""
    ProgramSettings.load()
    ProgramSettings.objects.filter(pk=1).update(program_started_at=timezone.now() - timedelta(days=60))


def order_line(preview):
    return next(line for line in preview.lines if line.kind == "order")


@pytest.fixture
def order_before_start(start, rules):
    """100 of goods + 20 of tax + 10 of shipping (130), placed before the program started."""
    return OrderFactory(
        member=MemberFactory(signed_up_at=None),
        total=D("130.00"),
        earnable_amount=D("100.00"),
        tax_amount=D("20.00"),
        shipping_amount=D("10.00"),
        placed_at=start - timedelta(days=3),
    )


def test_reward_past_actions_earns_on_the_goods_not_the_total(order_before_start):
    assert order_line(service.backfill_preview()).points_total == 100


def test_reward_past_actions_counts_tax_and_shipping_where_the_program_says(order_before_start):
    ProgramSettings.objects.filter(pk=1).update(earn_on_tax=True, earn_on_shipping=True)
    assert order_line(service.backfill_preview()).points_total == 130


def test_reward_past_actions_takes_off_the_goods_a_refund_returned(order_before_start):
    Order.objects.filter(pk=order_before_start.pk).update(financial_status="partially_refunded")
    OrderRefund.objects.create(
        order=order_before_start, store_refund_id="R1", amount=D("36.00"), goods_amount=D("30.00"), tax_amount=D("6")
    )
    assert order_line(service.backfill_preview()).points_total == 70


def test_reward_past_actions_takes_off_a_money_only_refund_as_its_share_of_the_order(order_before_start):
    Order.objects.filter(pk=order_before_start.pk).update(financial_status="partially_refunded")
    OrderRefund.objects.create(order=order_before_start, store_refund_id="R1", amount=D("13.00"))  # 10% of 130
    assert order_line(service.backfill_preview()).points_total == 90


def test_reward_past_actions_without_a_breakdown_earns_on_the_total_less_what_is_known(start, rules):
    OrderFactory(member=MemberFactory(), total=D("50.00"), tax_amount=D("8.00"), placed_at=start - timedelta(days=1))
    assert order_line(service.backfill_preview()).points_total == 42


def test_a_run_credits_what_the_preview_said(order_before_start, manager):
    run = service.backfill_run_create(actor=manager, queue=False)
    service.backfill_run_apply(run_id=run.pk)
    order_before_start.member.refresh_from_db()
    assert order_before_start.member.available_points == 100


def test_new_conversions_rewards_an_order_on_its_goods(tiers, manager, started):
    EarnRuleFactory(name="Place an order", kind="order", points_per_currency_unit=1, hold_days=0)
    order = OrderFactory(total=D("130.00"), earnable_amount=D("100.00"), tax_amount=D("20.00"), shipping_amount=10)
    done = conversions_reward(actor=manager, order_ids=[order.pk])
    assert (done.credited, done.points) == (1, 100)


def test_new_conversions_takes_back_what_a_recorded_refund_returned(tiers, manager, program_reverts):
    EarnRuleFactory(name="Place an order", kind="order", points_per_currency_unit=1, hold_days=0)
    order = OrderFactory(total=D("100.00"), earnable_amount=D("100.00"), financial_status="partially_refunded")
    OrderRefund.objects.create(order=order, store_refund_id="R1", amount=D("30.00"), goods_amount=D("30.00"))
    conversions_reward(actor=manager, order_ids=[order.pk])
    order.member.refresh_from_db()
    assert order.member.available_points == 70
    again = conversions_reward(actor=manager, order_ids=[order.pk])
    assert again.credited == 0 and "not a new conversion" in again.refused[0]
    order.member.refresh_from_db()
    assert order.member.available_points == 70


def test_a_refund_counted_by_reward_past_actions_is_not_taken_back_again_by_a_later_event(
    order_before_start, manager, system
):
    """The run earned on what was kept (100 - 30); a later refund of the same order takes back only its own share."""
    from loyalty.services.orders import RefundFacts, order_refunds_add

    Order.objects.filter(pk=order_before_start.pk).update(financial_status="partially_refunded")
    OrderRefund.objects.create(order=order_before_start, store_refund_id="R1", amount=D("30.00"), goods_amount=D("30"))
    run = service.backfill_run_create(actor=manager, queue=False)
    service.backfill_run_apply(run_id=run.pk)
    member = order_before_start.member
    member.refresh_from_db()
    assert member.available_points == 70

    later = RefundFacts(store_refund_id="R2", amount=D("10.00"), goods=D("10.00"))
    order_refunds_add(
        store=order_before_start.store, store_order_id=order_before_start.store_order_id, refunds=[later], actor=system
    )

    member.refresh_from_db()
    assert member.available_points == 60  # the 30 already left out, the new 10 taken back
