"""What an order earns on, and what a refund takes back: one base for both, in Python and in SQL.

The **earnable amount** of an order is its goods after discounts, without tax and shipping, unless the program
settings say tax or shipping earn too (`earn_on_tax`, `earn_on_shipping`; tax on shipping earns only when both do).
The parts are the order's after its edits and before its refunds. Where the store gave no goods amount, the goods are
the total less the tax and shipping it gave.

A refund takes back the same parts it returned: its goods, their tax, its shipping and that tax, each counting only
where it earns, so a shipping-only refund takes nothing while shipping does not earn. Money the store tied to no part
(a refund of an amount only) is the same share of every part: prorated over the order's total.

Points are rounded down everywhere: a way to earn gives floor(rate x earnable amount) (or its fixed points), and a
refund takes back floor(points x refunded share), never more than the earnable amount in all.
"""

import math
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction

ZERO = Decimal(0)


@dataclass(frozen=True)
class OrderParts:
    """What an order is made of, as the Order row holds it (the same attribute names, so an Order serves as one)."""

    total: Decimal
    earnable_amount: Decimal | None
    tax_amount: Decimal = ZERO
    shipping_amount: Decimal = ZERO
    shipping_tax_amount: Decimal = ZERO

    @classmethod
    def of(cls, order) -> "OrderParts":
        return cls(
            total=Decimal(order.total),
            earnable_amount=None if order.earnable_amount is None else Decimal(order.earnable_amount),
            tax_amount=Decimal(order.tax_amount or 0),
            shipping_amount=Decimal(order.shipping_amount or 0),
            shipping_tax_amount=Decimal(order.shipping_tax_amount or 0),
        )


def goods_amount(parts) -> Decimal:
    """The goods after discounts; where the store gave none, the total less its tax and shipping."""
    if parts.earnable_amount is not None:
        return Decimal(parts.earnable_amount)
    return Decimal(parts.total) - _taxes_and_shipping(parts)


def _taxes_and_shipping(parts) -> Decimal:
    return (
        Decimal(parts.tax_amount or 0) + Decimal(parts.shipping_amount or 0) + Decimal(parts.shipping_tax_amount or 0)
    )


def _earning_parts(goods, tax, shipping, shipping_tax, program) -> Decimal:
    amount = Decimal(goods)
    if program.earn_on_tax:
        amount += Decimal(tax or 0)
    if program.earn_on_shipping:
        amount += Decimal(shipping or 0)
        if program.earn_on_tax:
            amount += Decimal(shipping_tax or 0)
    return amount


def earnable_amount(parts, program) -> Decimal:
    """The amount an order (an Order or OrderParts) earns on under the program's settings; never below 0."""
    amount = _earning_parts(
        goods_amount(parts), parts.tax_amount, parts.shipping_amount, parts.shipping_tax_amount, program
    )
    return max(amount, ZERO)


def refund_earnable_amount(refund, parts, program, order_earnable: Decimal | None = None) -> Fraction:
    """The part of the order's earnable amount a refund (an OrderRefund) returned: its parts that earn, plus the
    money tied to no part as a share of the order's total. Between 0 and the order's earnable amount; exact (a
    fraction), so a share that is a whole number of points is never rounded a point short."""
    if order_earnable is None:
        order_earnable = earnable_amount(parts, program)
    refunded = Fraction(
        _earning_parts(
            refund.goods_amount, refund.tax_amount, refund.shipping_amount, refund.shipping_tax_amount, program
        )
    )
    total = Decimal(parts.total)
    if (unallocated := unallocated_amount(refund)) and total > 0:
        refunded += Fraction(unallocated) * Fraction(order_earnable) / Fraction(total)
    return min(max(refunded, Fraction(0)), Fraction(order_earnable))


def unallocated_amount(refund) -> Decimal:
    """The money of a refund beyond the parts it names (all of it, for a refund of an amount only)."""
    parts = refund.goods_amount + refund.tax_amount + refund.shipping_amount + refund.shipping_tax_amount
    return max(Decimal(refund.amount) - Decimal(parts), ZERO)


def points_for_amount(rule, amount: Decimal) -> int:
    """Points a "Place an order" way to earn gives for an earnable amount: floor(rate x amount), else its fixed
    points."""
    if rule.points_per_currency_unit:
        return int((max(Decimal(amount), ZERO) * rule.points_per_currency_unit).to_integral_value(ROUND_FLOOR))
    return int(rule.points)


def refund_share(points: int, refunded: Fraction | Decimal, earnable: Decimal) -> int:
    """The refunded share of `points`, rounded down: floor(points x refunded / earnable), computed exactly; 0 when
    nothing earns."""
    earnable, refunded = Fraction(earnable), Fraction(refunded)
    if earnable <= 0 or refunded <= 0:
        return 0
    return math.floor(points * min(refunded, earnable) / earnable)


# ---------------------------------------------------------------------------------------------------------------
# The same base in SQL, for set-based paths (Reward past actions)


def _earning_parts_sql(alias: str, program, goods: str) -> str:
    terms = [goods]
    if program.earn_on_tax:
        terms.append(f"{alias}.tax_amount")
    if program.earn_on_shipping:
        terms.append(f"{alias}.shipping_amount")
        if program.earn_on_tax:
            terms.append(f"{alias}.shipping_tax_amount")
    return "(" + " + ".join(terms) + ")"


def earnable_amount_sql(program, order: str = "o") -> str:
    """earnable_amount() of the order row `order`, as an SQL expression (not yet floored at 0)."""
    goods = (
        f"COALESCE({order}.earnable_amount, "
        f"{order}.total - {order}.tax_amount - {order}.shipping_amount - {order}.shipping_tax_amount)"
    )
    return _earning_parts_sql(order, program, goods)


def refunded_earnable_sql(program, order: str = "o", refund: str = "f") -> str:
    """The sum of refund_earnable_amount() over the order's refunds, as an SQL expression."""
    parts = _earning_parts_sql(refund, program, f"{refund}.goods_amount")
    beyond = (
        f"({refund}.amount - {refund}.goods_amount - {refund}.tax_amount - {refund}.shipping_amount "
        f"- {refund}.shipping_tax_amount)"
    )
    prorated = (
        f"CASE WHEN {order}.total > 0 AND {beyond} > 0 "
        f"THEN {beyond} * {earnable_amount_sql(program, order)} / {order}.total ELSE 0 END"
    )
    return (
        f"COALESCE((SELECT SUM({parts} + {prorated}) FROM loyalty_orderrefund {refund} "
        f"WHERE {refund}.order_id = {order}.id), 0)"
    )
