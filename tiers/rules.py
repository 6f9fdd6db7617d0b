"""The tier rule: a member is in the highest tier whose threshold their lifetime points reach.

Written once in Python (tier_for) and once in SQL (tier_for_sql), built from the same table of tiers; a property test
(tests/tiers/test_tier_rule.py) holds the two to one answer. Every writer of a member's tier uses one of them: the
ledger's single and bulk paths, members created from orders, imports and the admin, and the recompute after a tier
changes. Below the lowest threshold a member has no tier.
"""

from bisect import bisect_right

from .models import Tier

TierTable = list[tuple[int, int]]  # (threshold, tier id), lowest threshold first


def tier_table() -> TierTable:
    """The program's tiers as they are now (retired tiers left out), lowest threshold first."""
    return list(Tier.objects.filter(retired=False).order_by("threshold").values_list("threshold", "id"))


def tier_for(lifetime: int, table: TierTable) -> int | None:
    """The id of the highest tier whose threshold `lifetime` (points) reaches; None below the lowest."""
    i = bisect_right([threshold for threshold, _ in table], lifetime)
    return table[i - 1][1] if i else None


def tier_for_sql(lifetime: str, table: TierTable) -> str:
    """tier_for as an SQL CASE over `lifetime` (an SQL expression), with the table's thresholds inlined."""
    if not table:
        return "CAST(NULL AS bigint)"
    whens = " ".join(f"WHEN {lifetime} >= {int(t)} THEN {int(i)}" for t, i in reversed(table))
    return f"CASE {whens} ELSE NULL END"
