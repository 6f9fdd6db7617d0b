"""From a store's webhook payload to the program's order facts.

Shopify's and WooCommerce's published REST formats: amounts are strings ("199.00"), so they become Decimal exactly;
ids are parsed by Python's json, whose integers are exact at any size (Shopify's ids exceed 2^53, where a JavaScript
number would round them), and stored as strings.

The amount that earns points (`earnable_amount`) is what the shopper paid for the goods, after discounts, without tax
or shipping:
* Shopify: `subtotal_price` (line items after discounts, before shipping and tax), less `total_tax` when the shop's
  prices include tax (`taxes_included`);
* WooCommerce: `total` less `total_tax` and `shipping_total` (its total is already after discounts; fees count).
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from loyalty.models import Store
from loyalty.services.orders import OrderFacts, RefundFacts

SHOPIFY_ORDER_TOPICS = frozenset(
    {
        "orders/create",
        "orders/paid",
        "orders/updated",
        "orders/cancelled",
        "orders/fulfilled",
        "orders/partially_fulfilled",
    }
)
SHOPIFY_REFUND_TOPICS = frozenset({"refunds/create"})
SHOPIFY_IGNORED_TOPICS = frozenset({"orders/delete"})
WOO_ORDER_TOPICS = frozenset({"order.created", "order.updated", "order.restored"})
WOO_IGNORED_TOPICS = frozenset({"order.deleted"})

ORDER, REFUND, IGNORE = "order", "refund", "ignore"

# WooCommerce order statuses, in Shopify's financial-status words (the program's revert rules use these).
WOO_FINANCIAL_STATUS = {
    "pending": "pending",
    "checkout-draft": "pending",
    "on-hold": "pending",
    "processing": "paid",
    "completed": "paid",
    "refunded": "refunded",
    "failed": "failed",
    "cancelled": "voided",
    "trash": "voided",
}


# The years a date may have: both Python and the database hold them whatever the offset.
FIRST_YEAR, LAST_YEAR = 1900, 2100


class PayloadError(ValueError):
    """The payload cannot be read as the topic's resource; the message says which field and why."""


@dataclass
class ParsedEvent:
    kind: str
    order: OrderFacts | None = None
    store_order_id: str = ""
    refunds: list[RefundFacts] = field(default_factory=list)


def topic_kind(store: str, topic: str) -> str | None:
    """What a topic carries (an order, a refund, nothing the program needs), or None for a topic it does not know."""
    if store == Store.SHOPIFY:
        topics = ((SHOPIFY_ORDER_TOPICS, ORDER), (SHOPIFY_REFUND_TOPICS, REFUND), (SHOPIFY_IGNORED_TOPICS, IGNORE))
    else:
        topics = ((WOO_ORDER_TOPICS, ORDER), (WOO_IGNORED_TOPICS, IGNORE))
    for names, kind in topics:
        if topic in names:
            return kind
    return None


def load_json(body: bytes) -> dict:
    """The payload as a dict; amounts sent as JSON numbers become Decimal, never float."""
    try:
        payload = json.loads(body.decode("utf-8"), parse_float=Decimal)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"The body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise PayloadError("The body is not a JSON object.")
    return payload


def order_ref(store: str, kind: str | None, payload: dict) -> str:
    """The store's order id the payload is about ("" when it has none)."""
    value = payload.get("order_id") if store == Store.SHOPIFY and kind == REFUND else payload.get("id")
    return "" if value is None or isinstance(value, bool) else str(value)[:64]


def delivery_id(store: str, headers, payload: dict | None, body: bytes) -> str:
    """The key that makes a re-sent delivery a no-op.

    Shopify sends the same X-Shopify-Webhook-Id on every retry of a delivery. WooCommerce's delivery id is new on each
    attempt, so the order's id with its modified time identifies the order's state instead.
    """
    if store == Store.SHOPIFY:
        if webhook_id := headers.get("X-Shopify-Webhook-Id"):
            return f"webhook:{webhook_id}"[:200]
        if event_id := headers.get("X-Shopify-Event-Id"):
            return f"event:{headers.get('X-Shopify-Topic', '')}:{event_id}"[:200]
    else:
        modified = payload and (payload.get("date_modified_gmt") or payload.get("date_modified"))
        if payload and payload.get("id") is not None and modified:
            return f"order:{payload['id']}:{modified}"[:200]
        if wc_delivery := headers.get("X-WC-Webhook-Delivery-ID"):
            return f"delivery:{wc_delivery}"[:200]
    return "sha256:" + hashlib.sha256(body).hexdigest()


def parse(store: str, topic: str, payload: dict) -> ParsedEvent:
    kind = topic_kind(store, topic)
    if kind is None:
        raise PayloadError(f"Unknown topic {topic!r}.")
    if kind == IGNORE:
        return ParsedEvent(kind=IGNORE, store_order_id=order_ref(store, kind, payload))
    if store == Store.SHOPIFY and kind == REFUND:
        return ParsedEvent(
            kind=REFUND,
            store_order_id=_required_id(payload, "order_id"),
            refunds=[shopify_refund(payload)],
        )
    facts = shopify_order(payload) if store == Store.SHOPIFY else woocommerce_order(payload)
    return ParsedEvent(kind=ORDER, order=facts, store_order_id=facts.store_order_id)


# ---------------------------------------------------------------------------------------------------------------
# Shopify


def shopify_order(data: dict) -> OrderFacts:
    customer = data.get("customer") or {}
    subtotal = _money(data, "subtotal_price", default=None)
    tax = _money(data, "total_tax", default=Decimal(0))
    earnable = None
    if subtotal is not None:
        earnable = max(subtotal - tax if data.get("taxes_included") else subtotal, Decimal(0))
    placed_at = _datetime(data, "processed_at", required=False) or _datetime(data, "created_at")
    return OrderFacts(
        store=Store.SHOPIFY,
        store_order_id=_required_id(data, "id"),
        order_number=str(data.get("name") or data.get("order_number") or ""),
        email=data.get("email") or data.get("contact_email") or customer.get("email") or "",
        customer_id=_id_or_blank(customer.get("id")),
        first_name=customer.get("first_name") or "",
        last_name=customer.get("last_name") or "",
        total=_money(data, "total_price"),
        earnable_amount=earnable,
        currency=data.get("currency") or "USD",
        financial_status=data.get("financial_status") or "",
        cancelled=bool(data.get("cancelled_at")),
        tags=", ".join(t.strip() for t in str(data.get("tags") or "").split(",") if t.strip()),
        placed_at=placed_at,
        updated_at=_datetime(data, "updated_at", required=False) or placed_at,
        test=bool(data.get("test")),
        refunds=[shopify_refund(r) for r in data.get("refunds") or []],
    )


def shopify_refund(data: dict) -> RefundFacts:
    """A refund's amount is the money its successful refund transactions returned (shipping-only refunds have no
    refunded line, only a transaction)."""
    amount = Decimal(0)
    for index, transaction in enumerate(data.get("transactions") or []):
        if transaction.get("kind") == "refund" and transaction.get("status") == "success":
            amount += _money(transaction, "amount", where=f"transactions[{index}]")
    return RefundFacts(
        store_refund_id=_required_id(data, "id"),
        amount=amount,
        created_at=_datetime(data, "created_at", required=False),
    )


# ---------------------------------------------------------------------------------------------------------------
# WooCommerce


def woocommerce_order(data: dict) -> OrderFacts:
    billing = data.get("billing") or {}
    status = str(data.get("status") or "")
    refunds = [woocommerce_refund(r, index) for index, r in enumerate(data.get("refunds") or [])]
    total = _money(data, "total")
    earnable = (
        total - _money(data, "total_tax", default=Decimal(0)) - _money(data, "shipping_total", default=Decimal(0))
    )
    placed_at = _datetime(data, "date_created_gmt", required=False) or _datetime(data, "date_created")
    return OrderFacts(
        store=Store.WOOCOMMERCE,
        store_order_id=_required_id(data, "id"),
        order_number=str(data.get("number") or ""),
        email=billing.get("email") or "",
        customer_id=_id_or_blank(data.get("customer_id")),
        first_name=billing.get("first_name") or "",
        last_name=billing.get("last_name") or "",
        total=total,
        earnable_amount=max(earnable, Decimal(0)),
        currency=data.get("currency") or "USD",
        financial_status=_woo_financial_status(status, data, refunds),
        cancelled=status == "cancelled",
        tags="",
        placed_at=placed_at,
        updated_at=_datetime(data, "date_modified_gmt", required=False) or placed_at,
        test=False,
        refunds=refunds,
    )


def _woo_financial_status(status: str, data: dict, refunds: list[RefundFacts]) -> str:
    financial = WOO_FINANCIAL_STATUS.get(status, status)
    # A cancelled order that had been paid is a paid order that was cancelled.
    if status == "cancelled" and data.get("date_paid_gmt"):
        financial = "paid"
    if financial == "paid" and refunds:
        financial = "partially_refunded"
    return financial


def woocommerce_refund(data: dict, index: int) -> RefundFacts:
    """WooCommerce lists an order's refunds with negative totals ("-10.00")."""
    return RefundFacts(
        store_refund_id=_required_id(data, "id", where=f"refunds[{index}]"),
        amount=abs(_money(data, "total", where=f"refunds[{index}]")),
    )


# ---------------------------------------------------------------------------------------------------------------
# Fields


def _required_id(data: dict, name: str, where: str = "") -> str:
    value = data.get(name)
    if value is None or value == "" or isinstance(value, bool | dict | list):
        raise PayloadError(f"Missing field {where + '.' if where else ''}{name}.")
    return str(value)[:64]


def _id_or_blank(value) -> str:
    # WooCommerce sends customer_id 0 for a guest checkout.
    if value in (None, "", 0, "0") or isinstance(value, bool):
        return ""
    return str(value)[:64]


_MISSING = object()


def _money(data: dict, name: str, *, default=_MISSING, where: str = "") -> Decimal | None:
    value = data.get(name)
    label = f"{where + '.' if where else ''}{name}"
    if value is None or value == "":
        if default is _MISSING:
            raise PayloadError(f"Missing field {label}.")
        return default
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise PayloadError(f"Field {label} is not an amount: {value!r}.") from None
    if not amount.is_finite():
        raise PayloadError(f"Field {label} is not an amount: {value!r}.")
    return amount.quantize(Decimal("0.01"))


def _datetime(data: dict, name: str, *, required: bool = True) -> datetime | None:
    value = data.get(name)
    if not value:
        if required:
            raise PayloadError(f"Missing field {name}.")
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError(f"Field {name} is not a date and time: {value!r}.") from None
    if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
        # 9999-12-31T23:59:59-14:00 is year 10000 in UTC: PostgreSQL would store it and Python never read it back.
        raise PayloadError(f"Field {name} is outside the years {FIRST_YEAR} to {LAST_YEAR}: {value!r}.")
    if parsed.tzinfo is None:
        # WooCommerce's *_gmt fields carry no offset: they are UTC (the parsers prefer them to the local ones).
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
