"""The idempotency keys of outside facts (every path that credits a fact uses these), and their generations.

An order's earning for a way to earn is one fact whether the store's webhook, "Reward past actions" or "New
conversions" credits it; a sign-up's likewise. Every path uses these keys, so whichever comes first credits it and
the others see it as already applied, and an order's automatic revert finds its earning whoever made it.

An order's later facts are keyed here too, each by what makes it one fact:
* a reopening (paid again after its points were taken back in full) earns again: keyed by the reopening's number;
* an edit (a new version of the order with a new earnable amount) tops the earning up or takes part of it back:
  keyed by the reopening, the order's version (its last update time) and, for a take-back, the earning it takes from;
* a refund takes its share back: keyed by the refund, the reopening and the earning it takes from;
* a full revert (cancelled, refunded, tagged) reverses each earning once: keyed by the earning.

A fact's credit that an undo reversed (an import, a Reward past actions run or a group action undone) is freed: the
undone entry keeps its key (entries are never edited), and the fact's next credit carries the key's next generation,
f"{key}#{n}" (loyalty.FreedKey). Every path asks for a fact by its base key; the ledger posts and looks up the live
one (live_keys, live_key_sql), so a fact freed by an undo can be credited again, once.
"""

from collections.abc import Iterable
from datetime import UTC, datetime


def order_earning_key(order_id: int, rule_id: int, reopening: int = 0) -> str:
    """The order's earning under a way to earn; a reopening's earning gets its own key."""
    key = f"order:{order_id}:rule:{rule_id}"
    return f"{key}:reopening:{reopening}" if reopening else key


def order_id_of_earning_key(key: str | None) -> int | None:
    """The order an order earning's key names (None for any other key): how a backfilled earning, whose source is
    the run, is traced back to its order."""
    parts = (key or "").split("#")[0].split(":")  # a later generation's key names the same order
    if len(parts) >= 4 and parts[0] == "order" and parts[2] == "rule" and parts[1].isdigit():
        return int(parts[1])
    return None


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


def order_version(updated_at: datetime | None) -> str:
    """An order's version as its keys name it: its last update time in UTC, to the microsecond."""
    if updated_at is None:
        return "none"
    return updated_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def order_top_up_key(order_id: int, rule_id: int, reopening: int, version: str) -> str:
    """An edit that raised the order's earnable amount: the earning's top-up for that version."""
    return f"order:{order_id}:rule:{rule_id}:reopening:{reopening}:version:{version}:top-up"


def order_edit_take_back_key(order_id: int, rule_id: int, reopening: int, version: str, earning_id: int) -> str:
    """An edit that lowered the order's earnable amount: what that version takes back from one earning entry."""
    return f"takeback:order:{order_id}:rule:{rule_id}:reopening:{reopening}:version:{version}:from:{earning_id}"


def order_refund_take_back_key(order_id: int, refund_id: int, rule_id: int, reopening: int, earning_id: int) -> str:
    """A refund's share, taken back from one earning entry of the order's current reopening."""
    return f"takeback:order:{order_id}:refund:{refund_id}:rule:{rule_id}:reopening:{reopening}:from:{earning_id}"


def order_refund_take_back_key_before_edits(order_id: int, refund_id: int, rule_id: int) -> str:
    """The key a refund's take-back had while an order held one earning entry per way to earn: still honoured, so a
    refund taken back under it is not taken back again."""
    return f"takeback:order:{order_id}:refund:{refund_id}:rule:{rule_id}"


def order_revert_key(order_id: int, rule_id: int, earning_id: int, *, first_earning: bool) -> str:
    """A full revert of one earning entry (the order cancelled, refunded or tagged)."""
    key = f"revert:order:{order_id}:rule:{rule_id}"
    return key if first_earning else f"{key}:from:{earning_id}"


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
    that stands for one, carries its live key). Written as semi-joins the planner can run over millions of rows; with
    no fact freed yet (the usual case) it is a plain lookup of the key."""
    from .models import FreedKey

    on_ledger = """(EXISTS (SELECT 1 FROM loyalty_ledgerentry e WHERE e.idempotency_key = {k})
                   OR EXISTS (SELECT 1 FROM loyalty_shortfall s WHERE s.idempotency_key = {k}))"""
    if not FreedKey.objects.exists():
        return on_ledger.format(k=key)
    return f"""(({on_ledger.format(k=key)} AND NOT EXISTS (SELECT 1 FROM loyalty_freedkey f WHERE f.key = {key}))
               OR EXISTS (SELECT 1 FROM loyalty_freedkey f JOIN loyalty_ledgerentry e ON e.idempotency_key = f.live
                          WHERE f.key = {key})
               OR EXISTS (SELECT 1 FROM loyalty_freedkey f JOIN loyalty_shortfall s ON s.idempotency_key = f.live
                          WHERE f.key = {key}))"""


# ---------------------------------------------------------------------------------------------------------------
# Expiry runs


def expiration_key(member_id: int, day) -> str:
    """A member's expiration of one run day: a second run of that day posts nothing for the member."""
    return f"expire:{int(member_id)}:{day.isoformat()}"


def expiration_key_sql(member_column: str, day) -> str:
    """expiration_key as an SQL expression over a member id column (the day is a date, written in)."""
    return f"'expire:' || CAST({member_column} AS text) || ':{day.isoformat()}'"
