"""Reads of customer groups: the members a group's saved filter (or static list) stands for, counted live."""

from datetime import date, datetime

from django.db.models import Count, Max, Q, QuerySet, Sum

from .models import AccountFilter, CustomerGroup, CustomerGroupMember, Member, Order
from .timezones import day_after, day_start

# The order facts a group filters on; cancelled and test orders never count as a customer's orders.
ORDER_FILTERS = ("last_order_from", "last_order_to", "orders_min", "orders_max", "spent_min", "spent_max")
RFM_FILTERS = ("recency_min", "recency_max", "frequency_min", "frequency_max", "monetary_min", "monetary_max")


def counted_orders() -> QuerySet:
    """The orders that count as a customer's orders (for groups and RFM): placed by a member, not cancelled or test."""
    return Order.objects.filter(member__isnull=False, cancelled=False, test=False)


def _day_start(day: date) -> datetime:
    """Days are the store's (loyalty.timezones): a shopper's 21:30 on 31 March in New York is 31 March."""
    return day_start(day)


def _day_after(day: date) -> datetime:
    """Date ranges are inclusive: "until 31 May" means before 1 June."""
    return day_after(day)


def _order_condition(group: CustomerGroup) -> Q | None:
    """Members matching the group's order figures (number of orders, total spent, last order date)."""
    if all(getattr(group, name) is None for name in ORDER_FILTERS):
        return None
    having = Q()
    if group.orders_min is not None:
        having &= Q(n__gte=group.orders_min)
    if group.orders_max is not None:
        having &= Q(n__lte=group.orders_max)
    if group.spent_min is not None:
        having &= Q(spent__gte=group.spent_min)
    if group.spent_max is not None:
        having &= Q(spent__lte=group.spent_max)
    if group.last_order_from is not None:
        having &= Q(last__gte=_day_start(group.last_order_from))
    if group.last_order_to is not None:
        having &= Q(last__lt=_day_after(group.last_order_to))
    figures = counted_orders().values("member_id").annotate(n=Count("id"), spent=Sum("total"), last=Max("placed_at"))
    condition = Q(pk__in=figures.filter(having).values("member_id"))
    # A member without orders has 0 orders and 0 spent: "at most 2 orders" includes them.
    if _zero_orders_match(group):
        condition |= ~Q(pk__in=counted_orders().values("member_id"))
    return condition


def _zero_orders_match(group: CustomerGroup) -> bool:
    return (
        group.last_order_from is None
        and group.last_order_to is None
        and not group.orders_min
        and (group.spent_min is None or group.spent_min <= 0)
        and (group.spent_max is None or group.spent_max >= 0)
    )


def _rfm_condition(group: CustomerGroup) -> Q:
    condition = Q()
    for score in ("recency", "frequency", "monetary"):
        low, high = getattr(group, f"{score}_min"), getattr(group, f"{score}_max")
        if low is not None:
            condition &= Q(**{f"rfm__{score}__gte": low})
        if high is not None:
            condition &= Q(**{f"rfm__{score}__lte": high})
    if group.segment:
        condition &= Q(rfm__segment=group.segment)
    return condition


def group_members(group: CustomerGroup) -> QuerySet:
    """The members of a group, as a Member queryset (so it composes with the members list and the bulk path)."""
    if group.is_static:
        return Member.objects.filter(pk__in=CustomerGroupMember.objects.filter(group=group).values("member_id"))
    members = Member.objects.all()
    if group.tier_id:
        members = members.filter(tier_id=group.tier_id)
    if group.account == AccountFilter.ACCOUNT:
        members = members.filter(signed_up_at__isnull=False)
    elif group.account == AccountFilter.GUEST:
        members = members.filter(signed_up_at__isnull=True)
    if group.signed_up_from:
        members = members.filter(signed_up_at__gte=_day_start(group.signed_up_from))
    if group.signed_up_to:
        members = members.filter(signed_up_at__lt=_day_after(group.signed_up_to))
    if (orders := _order_condition(group)) is not None:
        members = members.filter(orders)
    return members.filter(_rfm_condition(group))


def group_member_count(group: CustomerGroup) -> int:
    """The live member count shown with each group."""
    return group_members(group).count()


def member_ids_of(group: CustomerGroup) -> list[int]:
    """A snapshot of the group's member ids, in id order: a background action works on who was in it at the start."""
    return list(group_members(group).order_by("pk").values_list("pk", flat=True))
