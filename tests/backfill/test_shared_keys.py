"""An order's earning is one fact whichever path credits it: the store's webhook, Reward past actions or New
conversions. The paths share its key, so none credits it twice and an automatic revert finds it."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from imports.services import backfill as service
from loyalty.keys import order_earning_key
from loyalty.models import EarnRuleKind, EntryKind, LedgerEntry, Order, ProgramSettings
from loyalty.services.conversions import conversions_reward
from loyalty.services.orders import order_settle
from tests.factories import EarnRuleFactory, MemberFactory, OrderFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def backfilled_order(tiers, manager, django_capture_on_commit_callbacks):
    start = timezone.now() - timedelta(days=5)
    ProgramSettings.load()
    ProgramSettings.objects.filter(pk=1).update(program_started_at=start, hold_days_default=0, revert_enabled=True)
    rule = EarnRuleFactory(kind=EarnRuleKind.ORDER, points_per_currency_unit=1, hold_days=0)
    member = MemberFactory(signed_up_at=start - timedelta(days=30))
    order = OrderFactory(member=member, total=Decimal("120.00"), placed_at=start - timedelta(days=2))
    with django_capture_on_commit_callbacks(execute=True):
        service.backfill_run_create(actor=manager)
    earning = LedgerEntry.objects.get(idempotency_key=order_earning_key(order.pk, rule.pk))
    assert (earning.points, earning.source) == (120, "backfill")
    return order, earning, member


def test_new_conversions_does_not_credit_a_backfilled_order_again(backfilled_order, manager):
    order, earning, member = backfilled_order
    conversions_reward(actor=manager, order_ids=[order.pk])
    assert LedgerEntry.objects.filter(member=member, kind=EntryKind.EARN).count() == 1
    member.refresh_from_db()
    assert member.available_points == 120


def test_cancelling_a_backfilled_order_takes_its_points_back(backfilled_order, manager):
    order, earning, member = backfilled_order
    Order.objects.filter(pk=order.pk).update(cancelled=True, financial_status="voided")
    order_settle(order=order.pk, actor=manager)
    assert LedgerEntry.objects.filter(reverses=earning).exists()
    member.refresh_from_db()
    assert member.available_points == 0
