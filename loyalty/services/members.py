"""Creating members: every path that makes one (orders, imports, the admin, demo data) gives it the tier its
lifetime points give (tiers/rules.py), so no two paths differ."""

from tiers.rules import tier_for, tier_table

from ..models import Member


def new_member_tier_id() -> int | None:
    """The tier of a member with no lifetime points yet: the lowest tier when its threshold is 0, else none."""
    return tier_for(0, tier_table())


def member_create(
    *, email: str, customer_id: str | None = None, first_name: str = "", last_name: str = "", signed_up_at=None
) -> Member:
    """Create a member (email lower-cased; signed_up_at None for a guest) in the tier 0 lifetime points give.

    Raises IntegrityError when the email or the customer id is taken (the caller decides what that means).
    """
    return Member.objects.create(
        email=email.strip().lower(),
        customer_id=customer_id or None,
        first_name=first_name[:150],
        last_name=last_name[:150],
        signed_up_at=signed_up_at,
        tier_id=new_member_tier_id(),
    )
