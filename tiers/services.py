"""Changing the tiers: what a change would do before it is saved, and moving every member after it is.

A tier saved or deleted in the admin first shows its impact (tier_change_impact), then, once confirmed, is saved and
every member is put in the tier their lifetime points reach in a background job (the ledger's tiers_recompute_all,
each move a TierChange with the reason). A deleted tier is retired, not removed: its history stays readable.
"""

from django.db import connection, transaction

from loyalty.queueing import queue_task

from .models import Tier
from .rules import TierTable, tier_for_sql, tier_table

NEW_TIER_ID = -2  # stands for a tier not saved yet in a simulated table


def table_with(*, tier: Tier | None = None, threshold: int | None = None, retire: bool = False) -> TierTable:
    """The tier table as it would be with `tier` at `threshold` (a new tier when it has no id), or without it."""
    table = [(t, i) for t, i in tier_table() if tier is None or i != tier.pk]
    if tier is not None and not retire:
        table.append((int(threshold), tier.pk or NEW_TIER_ID))
    return sorted(table)


def tier_change_impact(table: TierTable) -> tuple[int, int]:
    """How many members would move up and down were the tiers `table` (members' tiers as they are now)."""
    target = tier_for_sql("lifetime_points", table)
    old = {i: t for t, i in tier_table()}
    new = {i: t for t, i in table}
    with connection.cursor() as cur:
        cur.execute(
            f"""SELECT tier_id, target, COUNT(*) FROM (
                    SELECT tier_id, {target} AS target FROM loyalty_member) x
                WHERE COALESCE(tier_id, -1) <> COALESCE(target, -1) GROUP BY tier_id, target"""
        )
        up = down = 0
        for tier_id, target_id, count in cur.fetchall():
            before = old.get(tier_id, Tier.objects.filter(pk=tier_id).values_list("threshold", flat=True).first())
            after = new.get(target_id)
            if (after if after is not None else -1) > (before if before is not None else -1):
                up += count
            else:
                down += count
    return up, down


def tiers_recompute_queue(*, reason: str) -> None:
    """Move every member to the tier their lifetime reaches, in the background, once this transaction commits."""
    transaction.on_commit(lambda: queue_task("tiers.recompute", reason=reason[:255]))


def tier_retire(*, tier: Tier, reason: str) -> None:
    """Take a tier out of the program (its members move to the tier their lifetime reaches; history stays)."""
    with transaction.atomic():
        Tier.objects.filter(pk=tier.pk).update(retired=True)
        tiers_recompute_queue(reason=reason)
