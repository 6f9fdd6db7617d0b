"""Order payloads as Shopify and WooCommerce send them, built from the fixtures with chosen amounts.

Shopify: `subtotal_price`, `total_tax` and `total_price` are the order as placed; the `current_*` amounts follow its
edits and leave out what its refunds returned (refunded lines' subtotal and tax, refunded money); every refund so far
is listed in `refunds`. A refunds/create body is one refund: its successful refund transactions (the money), its
refund_line_items (goods' subtotal and tax) and a shipping_refund order adjustment.

WooCommerce: `total`, `total_tax`, `shipping_total` follow edits and stay when refunded; `refunds` lists each refund's
id and negative total, and, where given, the refund's line_items and shipping_lines (negative totals) as WooCommerce's
refund resource has them. `date_modified_gmt` is stamped to the second.
"""

import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from .conftest import load

ZERO = Decimal(0)
SHOPPER_EMAIL = "bob.norman@mail.example.com"
SHOPPER_ID = 7390122345678901234
WOO_EMAIL = "jeanne.dupont@exemple.example"


def money(value) -> str:
    return f"{Decimal(value):.2f}"


@dataclass(frozen=True)
class Refund:
    """A refund: its money, and what for (goods after discounts, their tax, shipping). A refund of money alone has
    no parts."""

    refund_id: int
    money: Decimal
    goods: Decimal = ZERO
    goods_tax: Decimal = ZERO
    shipping: Decimal = ZERO
    created_at: datetime | None = None  # Shopify's; by default the time of the payload that carries it
    lines: bool = True  # WooCommerce: the payload carries the refund's lines (else its money only)


def shopify_refund(refund: Refund, order_id: int, created_at: datetime) -> dict:
    payload = copy.deepcopy(load("shopify/refunds_create_partial.json"))
    stamp = (refund.created_at or created_at).isoformat()
    payload.update(id=refund.refund_id, order_id=order_id, created_at=stamp, processed_at=stamp)
    payload["transactions"] = [
        {
            "id": refund.refund_id * 10 + 1,
            "amount": money(refund.money),
            "kind": "refund",
            "status": "success",
            "currency": "USD",
            "order_id": order_id,
            "created_at": stamp,
        }
    ]
    lines = payload["refund_line_items"][:1] if refund.goods or refund.goods_tax else []
    for line in lines:
        line.update(
            id=refund.refund_id * 10 + 2,
            subtotal=float(refund.goods),
            subtotal_set={"shop_money": {"amount": money(refund.goods), "currency_code": "USD"}},
            total_tax=float(refund.goods_tax),
            total_tax_set={"shop_money": {"amount": money(refund.goods_tax), "currency_code": "USD"}},
        )
    payload["refund_line_items"] = lines
    payload["order_adjustments"] = (
        [
            {
                "id": refund.refund_id * 10 + 3,
                "amount": money(-refund.shipping),
                "tax_amount": "0.00",
                "kind": "shipping_refund",
                "order_id": order_id,
                "refund_id": refund.refund_id,
                "reason": "Shipping refund",
            }
        ]
        if refund.shipping
        else []
    )
    return payload


def shopify_order(
    order_id: int,
    *,
    goods,
    tax=ZERO,
    shipping=ZERO,
    placed_at: datetime,
    updated_at: datetime,
    financial_status: str = "paid",
    cancelled: bool = False,
    refunds: tuple[Refund, ...] = (),
    placed_as: tuple | None = None,
    email: str = SHOPPER_EMAIL,
    tags: str = "",
) -> dict:
    """An order of `goods` (after discounts) + `tax` + `shipping` as it stands after its edits; `placed_as` the
    (goods, tax, shipping) it was placed with, when an edit changed them."""
    goods, tax, shipping = Decimal(goods), Decimal(tax), Decimal(shipping)
    placed_goods, placed_tax, placed_shipping = (Decimal(v) for v in (placed_as or (goods, tax, shipping)))
    payload = copy.deepcopy(load("shopify/orders_paid.json"))
    refunded_goods = sum((r.goods for r in refunds), ZERO)
    refunded_tax = sum((r.goods_tax for r in refunds), ZERO)
    refunded_money = sum((r.money for r in refunds), ZERO)
    payload.update(
        id=order_id,
        name=f"#{order_id}",
        order_number=order_id,
        email=email,
        contact_email=email,
        created_at=placed_at.isoformat(),
        processed_at=placed_at.isoformat(),
        updated_at=updated_at.isoformat(),
        financial_status=financial_status,
        cancelled_at=updated_at.isoformat() if cancelled else None,
        subtotal_price=money(placed_goods),
        total_tax=money(placed_tax),
        total_price=money(placed_goods + placed_tax + placed_shipping),
        current_subtotal_price=money(goods - refunded_goods),
        current_total_tax=money(tax - refunded_tax),
        current_total_price=money(goods + tax + shipping - refunded_money),
        total_discounts="0.00",
        current_total_discounts="0.00",
        tags=tags,
        refunds=[shopify_refund(r, order_id, updated_at) for r in refunds],
    )
    for name in ("subtotal_price_set", "current_subtotal_price_set", "total_price_set", "total_tax_set"):
        payload.pop(name, None)
    payload["customer"] = {**payload["customer"], "email": email}
    payload["shipping_lines"] = (
        [{"id": order_id + 5, "title": "Standard", "price": money(shipping), "discounted_price": money(shipping)}]
        if shipping
        else []
    )
    payload["total_shipping_price_set"] = {"shop_money": {"amount": money(shipping), "currency_code": "USD"}}
    return payload


def woo_stamp(moment: datetime) -> str:
    """WooCommerce's *_gmt dates: UTC, to the second, without an offset."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def woo_refund(refund: Refund, *, with_lines: bool = False) -> dict:
    payload = {"id": refund.refund_id, "reason": "", "total": money(-refund.money)}
    if with_lines and refund.lines:
        payload["line_items"] = (
            [{"id": refund.refund_id + 1, "total": money(-refund.goods), "total_tax": money(-refund.goods_tax)}]
            if refund.goods or refund.goods_tax
            else []
        )
        payload["shipping_lines"] = (
            [{"id": refund.refund_id + 2, "total": money(-refund.shipping), "total_tax": "0.00"}]
            if refund.shipping
            else []
        )
    return payload


def woo_order(
    order_id: int,
    *,
    goods,
    tax=ZERO,
    shipping=ZERO,
    status: str = "processing",
    created_at: datetime,
    modified_at: datetime,
    paid: bool = True,
    refunds: tuple[Refund, ...] = (),
    refunds_with_lines: bool = False,
    email: str = WOO_EMAIL,
) -> dict:
    """A WooCommerce order of `goods` (after discounts) + `tax` + `shipping`, as it stands after its edits."""
    goods, tax, shipping = Decimal(goods), Decimal(tax), Decimal(shipping)
    payload = copy.deepcopy(load("woocommerce/order_created.json"))
    payload.update(
        id=order_id,
        number=str(order_id),
        status=status,
        date_created_gmt=woo_stamp(created_at),
        date_created=woo_stamp(created_at),
        date_modified_gmt=woo_stamp(modified_at),
        date_modified=woo_stamp(modified_at),
        date_paid_gmt=woo_stamp(created_at) if paid else None,
        date_paid=woo_stamp(created_at) if paid else None,
        discount_total="0.00",
        discount_tax="0.00",
        shipping_total=money(shipping),
        shipping_tax="0.00",
        cart_tax=money(tax),
        total_tax=money(tax),
        total=money(goods + tax + shipping),
        refunds=[woo_refund(r, with_lines=refunds_with_lines) for r in refunds],
    )
    payload["billing"] = {**payload["billing"], "email": email}
    payload["line_items"] = [
        {"id": order_id * 10, "name": "Goods", "quantity": 1, "total": money(goods), "total_tax": money(tax)}
    ]
    payload["shipping_lines"] = [{"id": order_id * 10 + 1, "total": money(shipping), "total_tax": "0.00"}]
    return payload
