"""The idempotency keys of outside facts, and their generations.

An order's earning for a way to earn is one fact whether the store's webhook, "Reward past actions" or "New
conversions" credits it; a sign-up's likewise. Every path uses these keys, so whichever comes first credits it and
the others see it as already applied, and an order's automatic revert finds its earning whoever made it.

A fact's credit that an undo reversed (an import, a Reward past actions run or a group action undone) is freed: the
undone entry keeps its key (entries are never edited), and the fact's next credit carries the key's next generation,
f"{key}#{n}" (loyalty.FreedKey). Every path asks for a fact by its base key; the ledger posts and looks up the live
one (live_keys, live_key_sql), so a fact freed by an undo can be credited again, once.
"""

from collections.abc import Iterable


def order_earning_key(order_id: int, rule_id: int) -> str:
    return f"order:{order_id}:rule:{rule_id}"


def signup_earning_key(member_id: int, rule_id: int) -> str:
    return f"signup:{member_id}:rule:{rule_id}"


def token_earning_key(token: str) -> str:
    """A reward token's credit: the same for the admin, the command line and CSV uploads."""
    return f"token:{token}"


def order_earning_key_sql(order_column: str, rule_id: int) -> str:
    """The same key as an SQL expression, for set-based paths."""
    return f"'order:' || CAST({order_column} AS text) || ':rule:{int(rule_id)}'"


def signup_earning_key_sql(member_column: str, rule_id: int) -> str:
    return f"'signup:' || CAST({member_column} AS text) || ':rule:{int(rule_id)}'"


# ---------------------------------------------------------------------------------------------------------------
# Generations (facts freed by an undo)


def live_keys(keys: Iterable[str]) -> dict[str, str]:
    """The key each fact's credit carries now: the base key itself, or its next generation once freed."""
    from .models import FreedKey

    keys = [k for k in dict.fromkeys(keys) if k]
    live = {k: k for k in keys}
    for start in range(0, len(keys), 5000):
        live.update(FreedKey.objects.filter(key__in=keys[start : start + 5000]).values_list("key", "live"))
    return live


def live_key(key: str | None) -> str | None:
    """live_keys for one key (None stays None)."""
    return live_keys([key])[key] if key else None


def live_key_sql(key: str) -> str:
    """live_key as an SQL expression over a base key given as an SQL expression."""
    return f"COALESCE((SELECT f.live FROM loyalty_freedkey f WHERE f.key = {key}), {key})"


def credited_sql(key: str) -> str:
    """An SQL condition: the fact with this base key (an SQL expression) is credited now (an entry, or a shortfall
    that stands for one, carries its live key)."""
    live = live_key_sql(key)
    return f"""(EXISTS (SELECT 1 FROM loyalty_ledgerentry e WHERE e.idempotency_key = {live})
               OR EXISTS (SELECT 1 FROM loyalty_shortfall s WHERE s.idempotency_key = {live}))"""
