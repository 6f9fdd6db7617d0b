"""The idempotency keys of the facts more than one path can credit.

An order's earning for a way to earn is one fact whether the store's webhook, "Reward past actions" or "New
conversions" credits it; a sign-up's likewise. Every path uses these keys, so whichever comes first credits it and
the others see it as already applied, and an order's automatic revert finds its earning whoever made it.
"""


def order_earning_key(order_id: int, rule_id: int) -> str:
    return f"order:{order_id}:rule:{rule_id}"


def signup_earning_key(member_id: int, rule_id: int) -> str:
    return f"signup:{member_id}:rule:{rule_id}"


def order_earning_key_sql(order_column: str, rule_id: int) -> str:
    """The same key as an SQL expression, for set-based paths."""
    return f"'order:' || CAST({order_column} AS text) || ':rule:{int(rule_id)}'"


def signup_earning_key_sql(member_column: str, rule_id: int) -> str:
    return f"'signup:' || CAST({member_column} AS text) || ':rule:{int(rule_id)}'"
