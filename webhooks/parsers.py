"""From a store's webhook payload to the program's order facts.

Shopify's and WooCommerce's published REST formats: amounts are strings ("199.00"), so they become Decimal exactly;
ids are parsed by Python's json, whose integers are exact at any size (Shopify's ids exceed 2^53, where a JavaScript
number would round them), and stored as strings. An amount beyond what an order can hold (999,999,999,999.99) is
refused with the field named, before the delivery is kept for processing.

An order is described by its parts after edits and before refunds: goods after discounts (Shopify's subtotals have
total_discounts taken off already, WooCommerce's total too) without tax and shipping, the tax on them, shipping and the
tax on it. The program's settings say which parts earn (loyalty.services.orders).
* Shopify: the `current_*` amounts follow edits but leave out what was refunded, so the refunds listed in the payload
  are added back: goods = current_subtotal_price + the refunds' line subtotals (less the goods' tax where the shop's
  prices include it); tax = current_total_tax + the refunds' tax, less the shipping lines' tax; shipping = the
  shipping lines' discounted prices (total_shipping_price_set where there are none). Without `current_*`, and for a
  cancelled order (whose current amounts are what is left after it): the original subtotal_price, total_tax and
  total_price, and an order already known keeps the amounts it had.
* WooCommerce: goods = total - total_tax - shipping_total (its total is after discounts; fees count as goods); tax on
  goods = total_tax - shipping_tax. A WooCommerce order keeps its total when refunded.

A refund says what it returned: Shopify's refund_line_items (their subtotal and total_tax), its shipping refunds
(order_adjustments of kind shipping_refund, or refund_shipping_lines) and the money of its successful refund
transactions; WooCommerce's refunds list gives the money ("-10.00"), and a refund's line_items, fee_lines and
shipping_lines where the payload carries them. Money beyond the parts given is a share of the whole order.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from loyalty.models import Store
from loyalty.services.orders import OrderFacts, RefundFacts
from loyalty.timezones import FIRST_YEAR, LAST_YEAR

# The largest amount an order or a refund can hold (loyalty.Order.total: 14 digits, 2 after the point). Points are
# at most 999,999.9999 a unit of it, so what it earns fits the ledger's 64-bit points too.
MAX_AMOUNT = Decimal("999999999999.99")
ZERO = Decimal(0)

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
SHOPIFY_EDIT_TOPICS = frozenset({"orders/edited"})
SHOPIFY_REFUND_TOPICS = frozenset({"refunds/create"})
SHOPIFY_IGNORED_TOPICS = frozenset({"orders/delete"})
WOO_ORDER_TOPICS = frozenset({"order.created", "order.updated", "order.restored"})
WOO_IGNORED_TOPICS = frozenset({"order.deleted"})

ORDER, REFUND, IGNORE, EDIT = "order", "refund", "ignore", "edit"
EDIT_NOTE = "order edit noted: its new totals arrive with the orders/updated that Shopify sends for it"

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


class PayloadError(ValueError):
    """The payload cannot be read as the topic's resource; the message says which field and why."""


@dataclass
class ParsedEvent:
    kind: str
    order: OrderFacts | None = None
    store_order_id: str = ""
    refunds: list[RefundFacts] = field(default_factory=list)
    note: str = ""


def topic_kind(store: str, topic: str) -> str | None:
    """What a topic carries (an order, a refund, nothing the program needs), or None for a topic it does not know."""
    if store == Store.SHOPIFY:
        topics = (
            (SHOPIFY_ORDER_TOPICS, ORDER),
            (SHOPIFY_EDIT_TOPICS, EDIT),
            (SHOPIFY_REFUND_TOPICS, REFUND),
            (SHOPIFY_IGNORED_TOPICS, IGNORE),
        )
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
    if store == Store.SHOPIFY and kind == EDIT and isinstance(payload.get("order_edit"), dict):
        value = payload["order_edit"].get("order_id")
    elif store == Store.SHOPIFY and kind == REFUND:
        value = payload.get("order_id")
    else:
        value = payload.get("id")
    return "" if value is None or isinstance(value, bool | dict | list) else str(value)[:64]


def delivery_id(store: str, headers, payload: dict | None, body: bytes) -> str:
    """The key that makes a re-sent delivery a no-op.

    Shopify sends the same X-Shopify-Webhook-Id on every retry of a delivery. WooCommerce's delivery id is new on each
    attempt, so the order's id, its modified time and a hash of the body identify the order's state instead: a body
    sent again is one event, and two states stamped in the same second (created while pending, updated once paid)
    are two.
    """
    if store == Store.SHOPIFY:
        if webhook_id := headers.get("X-Shopify-Webhook-Id"):
            return f"webhook:{webhook_id}"[:200]
        if event_id := headers.get("X-Shopify-Event-Id"):
            return f"event:{headers.get('X-Shopify-Topic', '')}:{event_id}"[:200]
    else:
        modified = payload and (payload.get("date_modified_gmt") or payload.get("date_modified"))
        if payload and payload.get("id") is not None and modified:
            return f"order:{str(payload['id'])[:64]}:{str(modified)[:40]}:{hashlib.sha256(body).hexdigest()[:32]}"
        if wc_delivery := headers.get("X-WC-Webhook-Delivery-ID"):
            return f"delivery:{wc_delivery}"[:200]
    return "sha256:" + hashlib.sha256(body).hexdigest()


def parse(store: str, topic: str, payload: dict) -> ParsedEvent:
    kind = topic_kind(store, topic)
    if kind is None:
        raise PayloadError(f"Unknown topic {topic!r}.")
    if kind == IGNORE:
        return ParsedEvent(kind=IGNORE, store_order_id=order_ref(store, kind, payload))
    if kind == EDIT and "order_edit" in payload:
        # The edit itself lists added and removed lines without prices; the order's new totals come with the
        # orders/updated Shopify sends for the same edit.
        if not isinstance(payload["order_edit"], dict):
            raise PayloadError("Field order_edit is not an object.")
        _required_id(payload["order_edit"], "order_id", where="order_edit")
        return ParsedEvent(kind=IGNORE, store_order_id=order_ref(store, kind, payload), note=EDIT_NOTE)
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
    customer = _object(data, "customer")
    taxes_included = bool(data.get("taxes_included"))
    refunds = [shopify_refund(r, where=f"refunds[{i}]") for i, r in enumerate(_list(data, "refunds"))]
    total = _money(data, "total_price")
    subtotal = _money(data, "subtotal_price", default=None)
    tax = _money(data, "total_tax", default=ZERO)
    # A cancelled order's current amounts are what is left after the cancellation, not an edit.
    cancelled = bool(data.get("cancelled_at"))
    current_subtotal = _money(data, "current_subtotal_price", default=None)
    current_tax = _money(data, "current_total_tax", default=None)
    current_total = _money(data, "current_total_price", default=None)
    if not cancelled and current_subtotal is not None:
        subtotal = current_subtotal + sum((r.goods for r in refunds), ZERO)
    if not cancelled and current_tax is not None:
        tax = current_tax + sum((r.goods_tax + r.shipping_tax for r in refunds), ZERO)
    if not cancelled and current_total is not None:
        total = _within(current_total + sum((r.amount for r in refunds), ZERO), "current_total_price")
    shipping, shipping_tax = _shopify_shipping(data)
    goods_tax = max(tax - shipping_tax, ZERO)
    goods = None
    if subtotal is not None:
        goods = max(subtotal - goods_tax if taxes_included else subtotal, ZERO)
    placed_at = _datetime(data, "processed_at", required=False) or _datetime(data, "created_at")
    return OrderFacts(
        store=Store.SHOPIFY,
        store_order_id=_required_id(data, "id"),
        order_number=str(data.get("name") or data.get("order_number") or ""),
        email=data.get("email") or data.get("contact_email") or customer.get("email") or "",
        customer_id=_id_or_blank(customer.get("id")),
        first_name=customer.get("first_name") or "",
        last_name=customer.get("last_name") or "",
        total=total,
        earnable_amount=_within(goods, "current_subtotal_price"),
        tax_amount=_within(goods_tax, "current_total_tax"),
        shipping_amount=max(shipping - shipping_tax if taxes_included else shipping, ZERO),
        shipping_tax_amount=shipping_tax,
        prices_include_tax=taxes_included,
        currency=data.get("currency") or "USD",
        financial_status=data.get("financial_status") or "",
        cancelled=cancelled,
        amounts_describe_order=not cancelled,
        tags=", ".join(t.strip() for t in str(data.get("tags") or "").split(",") if t.strip()),
        placed_at=placed_at,
        updated_at=_datetime(data, "updated_at", required=False) or placed_at,
        test=bool(data.get("test")),
        refunds=refunds,
    )


def _shopify_shipping(data: dict) -> tuple[Decimal, Decimal]:
    """(shipping as charged, its tax): the shipping lines' discounted prices, else total_shipping_price_set."""
    lines = _list(data, "shipping_lines")
    if not lines:
        return _set_money(data, "total_shipping_price"), ZERO
    shipping = tax = ZERO
    for index, line in enumerate(lines):
        where = f"shipping_lines[{index}]"
        line = _item(line, where)
        shipping += _money(line, "discounted_price", default=None, where=where) or _money(
            line, "price", default=ZERO, where=where
        )
        for t_index, tax_line in enumerate(_list(line, "tax_lines", where=where)):
            tax += _money(_item(tax_line, f"{where}.tax_lines[{t_index}]"), "price", default=ZERO, where=where)
    return _within(shipping, "shipping_lines"), _within(tax, "shipping_lines")


def shopify_refund(data: dict, where: str = "") -> RefundFacts:
    """A refund: the money its successful refund transactions returned, and what for (its refunded lines' subtotal
    and tax; its shipping refund). A refund of an amount alone has money and no parts."""
    data = _item(data, where or "refund")
    prefix = f"{where}." if where else ""
    amount = goods = goods_tax = shipping = shipping_tax = ZERO
    for index, transaction in enumerate(_list(data, "transactions", where=where)):
        transaction = _item(transaction, f"{prefix}transactions[{index}]")
        if transaction.get("kind") == "refund" and transaction.get("status") == "success":
            amount += _money(transaction, "amount", where=f"{prefix}transactions[{index}]")
    for index, line in enumerate(_list(data, "refund_line_items", where=where)):
        line_where = f"{prefix}refund_line_items[{index}]"
        line = _item(line, line_where)
        goods += _set_money(line, "subtotal", where=line_where)
        goods_tax += _set_money(line, "total_tax", where=line_where)
    if lines := _list(data, "refund_shipping_lines", where=where):
        for index, line in enumerate(lines):
            line_where = f"{prefix}refund_shipping_lines[{index}]"
            line = _item(line, line_where)
            shipping += _set_money(line, "subtotal_amount", where=line_where)
            shipping_tax += _set_money(line, "tax_amount", where=line_where)
    else:
        for index, adjustment in enumerate(_list(data, "order_adjustments", where=where)):
            adj_where = f"{prefix}order_adjustments[{index}]"
            adjustment = _item(adjustment, adj_where)
            if adjustment.get("kind") == "shipping_refund":
                # Order adjustments are negative: money going back to the shopper.
                shipping -= _money(adjustment, "amount", default=ZERO, where=adj_where)
                shipping_tax -= _money(adjustment, "tax_amount", default=ZERO, where=adj_where)
    return RefundFacts(
        store_refund_id=_required_id(data, "id", where=where),
        amount=_within(amount, f"{prefix}transactions"),
        created_at=_datetime(data, "created_at", required=False),
        goods=_within(goods, f"{prefix}refund_line_items"),
        goods_tax=_within(goods_tax, f"{prefix}refund_line_items"),
        shipping=_within(max(shipping, ZERO), f"{prefix}order_adjustments"),
        shipping_tax=_within(max(shipping_tax, ZERO), f"{prefix}order_adjustments"),
        goods_include_tax=True,  # Shopify's line subtotals hold the tax where the shop's prices include it
    )


# ---------------------------------------------------------------------------------------------------------------
# WooCommerce


def woocommerce_order(data: dict) -> OrderFacts:
    billing = _object(data, "billing")
    status = str(data.get("status") or "")
    refunds = [woocommerce_refund(r, index) for index, r in enumerate(_list(data, "refunds"))]
    total = _money(data, "total")
    tax = _money(data, "total_tax", default=ZERO)
    shipping = _money(data, "shipping_total", default=ZERO)
    shipping_tax = _money(data, "shipping_tax", default=ZERO)
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
        earnable_amount=max(total - tax - shipping, ZERO),
        tax_amount=max(tax - shipping_tax, ZERO),
        shipping_amount=max(shipping, ZERO),
        shipping_tax_amount=max(shipping_tax, ZERO),
        # WooCommerce's line and shipping totals are without tax either way.
        prices_include_tax=False,
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
    """A refund as WooCommerce lists it with its order: an id and its money as a negative total ("-10.00"). Where the
    payload carries the refund's lines (as WooCommerce's refund resource has them, with negative totals), they say what
    it returned."""
    where = f"refunds[{index}]"
    data = _item(data, where)
    money = _money(data, "total", default=None, where=where)
    if money is None:
        money = _money(data, "amount", where=where)
    goods = goods_tax = shipping = shipping_tax = ZERO
    for name in ("line_items", "fee_lines"):
        for line_index, line in enumerate(_list(data, name, where=where)):
            line_where = f"{where}.{name}[{line_index}]"
            line = _item(line, line_where)
            goods += abs(_money(line, "total", default=ZERO, where=line_where))
            goods_tax += abs(_money(line, "total_tax", default=ZERO, where=line_where))
    for line_index, line in enumerate(_list(data, "shipping_lines", where=where)):
        line_where = f"{where}.shipping_lines[{line_index}]"
        line = _item(line, line_where)
        shipping += abs(_money(line, "total", default=ZERO, where=line_where))
        shipping_tax += abs(_money(line, "total_tax", default=ZERO, where=line_where))
    return RefundFacts(
        store_refund_id=_required_id(data, "id", where=where),
        amount=abs(money),
        created_at=_datetime(data, "date_created_gmt", required=False),
        goods=_within(goods, f"{where}.line_items"),
        goods_tax=_within(goods_tax, f"{where}.line_items"),
        shipping=_within(shipping, f"{where}.shipping_lines"),
        shipping_tax=_within(shipping_tax, f"{where}.shipping_lines"),
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


def _label(name: str, where: str) -> str:
    return f"{where + '.' if where else ''}{name}"


def _money(data: dict, name: str, *, default=_MISSING, where: str = "") -> Decimal | None:
    value = data.get(name)
    label = _label(name, where)
    if value is None or value == "":
        if default is _MISSING:
            raise PayloadError(f"Missing field {label}.")
        return default
    if isinstance(value, bool | dict | list):
        raise PayloadError(f"Field {label} is not an amount: {value!r}.")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise PayloadError(f"Field {label} is not an amount: {str(value)[:40]!r}.") from None
    if not amount.is_finite():
        raise PayloadError(f"Field {label} is not an amount: {str(value)[:40]!r}.")
    return _within(amount, label).quantize(Decimal("0.01"))


def _within(amount: Decimal | None, label: str) -> Decimal | None:
    """The amount, when an order can hold it; else the delivery is refused naming the field."""
    if amount is not None and abs(amount) > MAX_AMOUNT:
        raise PayloadError(
            f"Field {label} is {amount:f}: more than an order can hold (at most {MAX_AMOUNT:,}); nothing was kept "
            "for processing."
        )
    return amount


def _set_money(data: dict, name: str, *, where: str = "") -> Decimal:
    """Shopify's amount in the shop's currency: `<name>_set.shop_money.amount`, else the plain `<name>`."""
    money_set = data.get(f"{name}_set")
    if isinstance(money_set, dict) and isinstance(money_set.get("shop_money"), dict):
        found = _money(money_set["shop_money"], "amount", default=None, where=_label(f"{name}_set.shop_money", where))
        if found is not None:
            return found
    return _money(data, name, default=ZERO, where=where)


def _object(data: dict, name: str) -> dict:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"Field {name} is not an object.")
    return value


def _list(data: dict, name: str, *, where: str = "") -> list:
    value = data.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError(f"Field {_label(name, where)} is not a list.")
    return value


def _item(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise PayloadError(f"Field {where} is not an object.")
    return value


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
