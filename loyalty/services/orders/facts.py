"""An order and its refunds as the store describes them (parsed from a webhook payload or a CSV row)."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from ...errors import LoyaltyError
from ...models import Order

ZERO = Decimal(0)

# Financial statuses (Shopify's words; WooCommerce statuses are mapped onto them) of an order that was paid.
PAID_STATUSES = frozenset({"paid", "partially_refunded", "refunded"})
REFUNDED = "refunded"


class OrderNotKnown(LoyaltyError):
    """A fact about an order that has not arrived yet (a refund before its order); retried later."""


@dataclass
class RefundFacts:
    """A refund: the money it returned and, where the store says, what for.

    `goods` is the refunded goods after discounts. `goods_include_tax`: the store reports them with their tax where
    the order's prices include tax (Shopify's refund-line subtotals), so that tax is taken out once the order is
    known. Money beyond the parts given counts as tied to no part (prorated over the order's total).
    """

    store_refund_id: str
    amount: Decimal
    created_at: datetime | None = None
    goods: Decimal = ZERO
    goods_tax: Decimal = ZERO
    shipping: Decimal = ZERO
    shipping_tax: Decimal = ZERO
    goods_include_tax: bool = False

    @property
    def has_parts(self) -> bool:
        return any((self.goods, self.goods_tax, self.shipping, self.shipping_tax))


@dataclass
class OrderFacts:
    """An order as the store describes it: its parts after edits and before refunds, and its refunds so far."""

    store: str
    store_order_id: str
    total: Decimal
    placed_at: datetime
    order_number: str = ""
    email: str = ""
    customer_id: str = ""
    first_name: str = ""
    last_name: str = ""
    earnable_amount: Decimal | None = None  # goods after discounts, without tax and shipping
    tax_amount: Decimal = ZERO  # tax on the goods
    shipping_amount: Decimal = ZERO  # shipping without its tax
    shipping_tax_amount: Decimal = ZERO
    prices_include_tax: bool = False
    currency: str = "USD"
    financial_status: str = ""
    cancelled: bool = False
    tags: str = ""
    test: bool = False
    updated_at: datetime | None = None
    refunds: list[RefundFacts] = field(default_factory=list)
    # False when the amounts describe what is left after a cancellation rather than the order: a known order then
    # keeps the amounts it had, and only a new one takes these.
    amounts_describe_order: bool = True


@dataclass
class OrderOutcome:
    """What one call did to an order, in a support agent's words."""

    order: Order
    created: bool = False
    notes: list[str] = field(default_factory=list)

    def __str__(self):
        return "; ".join(self.notes) or "nothing to change"
