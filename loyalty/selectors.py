"""Reads of the loyalty app."""

from dataclasses import dataclass

from django.db import connection

from tiers.rules import tier_for_sql, tier_table

from .models import EntryKind


@dataclass
class Difference:
    member_id: int
    email: str
    figure: str
    cached: int | None
    ledger: int | None

    def __str__(self):
        return (
            f"member #{self.member_id} {self.email}: {self.figure} is {self.cached} but the ledger says {self.ledger}"
        )


def ledger_differences(limit: int = 1000) -> list[Difference]:
    """Members whose cached figures (available, pending, lifetime, tier) differ from the ledger's sums and the tier
    rule (every member is in the tier their lifetime points reach; none below the lowest threshold)."""
    tier = tier_for_sql("COALESCE(s.lifetime, 0)", tier_table())
    sql = f"""
        SELECT m.id, m.email, m.available_points, m.pending_points, m.lifetime_points, m.tier_id,
               COALESCE(s.available, 0), COALESCE(s.pending, 0), COALESCE(s.lifetime, 0),
               {tier}
        FROM loyalty_member m LEFT JOIN (
            SELECT member_id,
                   SUM(CASE WHEN status = 'active' THEN points ELSE 0 END) AS available,
                   SUM(CASE WHEN status = 'pending' THEN points ELSE 0 END) AS pending,
                   SUM(CASE WHEN status = 'active' AND counts_toward_lifetime THEN points ELSE 0 END) AS lifetime
            FROM loyalty_ledgerentry GROUP BY member_id) s ON s.member_id = m.id
        WHERE m.available_points <> COALESCE(s.available, 0)
           OR m.pending_points <> COALESCE(s.pending, 0)
           OR m.lifetime_points <> COALESCE(s.lifetime, 0)
           OR COALESCE(m.tier_id, -1) <> COALESCE({tier}, -1)
        ORDER BY m.id LIMIT %s"""
    with connection.cursor() as cur:
        cur.execute(sql, [limit])
        rows = cur.fetchall()
    found = []
    for mid, email, available, pending, lifetime, tier, l_available, l_pending, l_lifetime, l_tier in rows:
        for figure, cached, ledger in (
            ("available", available, l_available),
            ("pending", pending, l_pending),
            ("lifetime", lifetime, l_lifetime),
            ("tier", tier, l_tier),
        ):
            if cached != ledger:
                found.append(Difference(mid, email, figure, cached, ledger))
    if len(found) < limit:
        found += batch_differences(limit=limit - len(found))
    if len(found) < limit:
        found += batch_link_differences(limit=limit - len(found))
    return found


def batch_differences(limit: int = 1000) -> list[Difference]:
    """Members whose open batches do not add up to what they can spend: the ledger's available balance, or 0 when it
    is below zero (a debt is repaid by the next credits, which then open smaller batches)."""
    sql = """
        SELECT m.id, m.email, COALESCE(b.open, 0),
               CASE WHEN COALESCE(s.available, 0) > 0 THEN COALESCE(s.available, 0) ELSE 0 END
        FROM loyalty_member m
        LEFT JOIN (SELECT member_id, SUM(points) AS available FROM loyalty_ledgerentry
                   WHERE status = 'active' GROUP BY member_id) s ON s.member_id = m.id
        LEFT JOIN (SELECT member_id, SUM(remaining) AS open FROM loyalty_pointsbatch GROUP BY member_id) b
               ON b.member_id = m.id
        WHERE COALESCE(b.open, 0) <> CASE WHEN COALESCE(s.available, 0) > 0 THEN COALESCE(s.available, 0) ELSE 0 END
        ORDER BY m.id LIMIT %s"""
    with connection.cursor() as cur:
        cur.execute(sql, [limit])
        return [Difference(mid, email, "open batches", open_, spendable) for mid, email, open_, spendable in cur]


def batch_link_differences(limit: int = 1000) -> list[Difference]:
    """Batches whose copies disagree with the ledger: a batch's member must be its entry's member, and the entry
    that expired it must be an expiration of that member (the batch table keeps no foreign key for either; see
    loyalty.models.PointsBatch). Each is reported on the batch's member, as "batch's member" (cached: the batch's
    member id, ledger: its entry's) or "batch's expiring entry" (cached: that entry's id, ledger: None, as no
    expiration of the member has it)."""
    sql = f"""
        SELECT b.member_id, COALESCE(m.email, ''), 'batch''s member', b.member_id, e.member_id
        FROM loyalty_pointsbatch b JOIN loyalty_ledgerentry e ON e.id = b.entry_id
        LEFT JOIN loyalty_member m ON m.id = b.member_id
        WHERE e.member_id <> b.member_id
        UNION ALL
        SELECT b.member_id, COALESCE(m.email, ''), 'batch''s expiring entry', b.expiration_entry_id, NULL
        FROM loyalty_pointsbatch b LEFT JOIN loyalty_member m ON m.id = b.member_id
        WHERE b.expiration_entry_id IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM loyalty_ledgerentry x WHERE x.id = b.expiration_entry_id AND x.member_id = b.member_id
            AND x.kind = '{EntryKind.EXPIRATION}')
        LIMIT %s"""
    with connection.cursor() as cur:
        cur.execute(sql, [limit])
        return [Difference(*row) for row in cur.fetchall()]
