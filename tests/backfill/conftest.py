"""Pre-program history shared by the Reward past actions tests."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from loyalty.models import EarnRuleKind, ProgramSettings
from tests.factories import EarnRuleFactory, MemberFactory, OrderFactory


@pytest.fixture
def start():
    started = timezone.now() - timedelta(days=10)
    ProgramSettings.load()
    ProgramSettings.objects.filter(pk=1).update(program_started_at=started, hold_days_default=0)
    return started


@pytest.fixture
def rules(tiers):
    signup = EarnRuleFactory(
        name="Sign up", kind=EarnRuleKind.SIGNUP, points=200, points_per_currency_unit=None, hold_days=0
    )
    order = EarnRuleFactory(name="Place an order", kind=EarnRuleKind.ORDER, points_per_currency_unit=1, hold_days=0)
    EarnRuleFactory(name="Old promo", kind=EarnRuleKind.ORDER, points_per_currency_unit=5, active=False)
    return signup, order


@pytest.fixture
def history(start, rules):
    """ann: account, 2 orders before the start and 1 after; bob: guest, 1 order before; cy: signed up after the
    start, ordered before as a guest; dan: account, orders that earn nothing (cancelled, test, unpaid)."""
    day = timedelta(days=1)
    ann = MemberFactory(email="ann@x.example", signed_up_at=start - 100 * day)
    bob = MemberFactory(email="bob@x.example", signed_up_at=None)
    cy = MemberFactory(email="cy@x.example", signed_up_at=start + day)
    dan = MemberFactory(email="dan@x.example", signed_up_at=start - 50 * day)
    OrderFactory(member=ann, total=Decimal("100.00"), placed_at=start - 90 * day, store_order_id="A1")
    OrderFactory(member=ann, total=Decimal("50.75"), placed_at=start - 40 * day, store_order_id="A2")
    OrderFactory(member=ann, total=Decimal("999.00"), placed_at=start + day)  # after the start: the live path's
    OrderFactory(member=bob, total=Decimal("30.00"), placed_at=start - 20 * day, store_order_id="B1")
    OrderFactory(member=cy, total=Decimal("20.00"), placed_at=start - 5 * day, store_order_id="C1")
    OrderFactory(member=dan, total=Decimal("500.00"), placed_at=start - 5 * day, cancelled=True)
    OrderFactory(member=dan, total=Decimal("500.00"), placed_at=start - 5 * day, test=True)
    OrderFactory(member=dan, total=Decimal("500.00"), placed_at=start - 5 * day, financial_status="pending")
    OrderFactory(member=None, email="nobody@x.example", total=Decimal("80.00"), placed_at=start - 5 * day)
    return ann, bob, cy, dan
