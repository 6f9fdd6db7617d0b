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
    """Members whose line of batches (loyalty.models.PointsBatch) disagrees with the ledger: "batched points" (the
    member's cached figure against the ledger's active credits, each of which opened a batch of its points),
    "batches" (what the batches hold against the same), and "line of batches" (the first batch that does not start
    where the one before it ended: cached, its start; ledger, the end before it). With the line whole and the cached
    figures right, what is left of the batches adds up to the available balance (0 when it is below zero)."""
    credits = """SELECT member_id, SUM(points) AS total FROM loyalty_ledgerentry
                 WHERE status = 'active' AND points > 0 GROUP BY member_id"""
    sql = f"""
        SELECT m.id, m.email, 'batched points', m.batched_points, COALESCE(c.total, 0)
        FROM loyalty_member m LEFT JOIN ({credits}) c ON c.member_id = m.id
        WHERE m.batched_points <> COALESCE(c.total, 0)
        UNION ALL
        SELECT m.id, m.email, 'batches', COALESCE(b.total, 0), COALESCE(c.total, 0)
        FROM loyalty_member m LEFT JOIN ({credits}) c ON c.member_id = m.id
        LEFT JOIN (SELECT member_id, SUM(points) AS total FROM loyalty_pointsbatch GROUP BY member_id) b
               ON b.member_id = m.id
        WHERE COALESCE(b.total, 0) <> COALESCE(c.total, 0)
        UNION ALL
        SELECT l.member_id, COALESCE(m.email, ''), 'line of batches', MIN(l.start), MIN(l.before)
        FROM (SELECT member_id, through - points AS start,
                     COALESCE(LAG(through) OVER (PARTITION BY member_id ORDER BY through), 0) AS before
              FROM loyalty_pointsbatch) l
        LEFT JOIN loyalty_member m ON m.id = l.member_id
        WHERE l.start <> l.before GROUP BY l.member_id, m.email
        ORDER BY 1 LIMIT %s"""
    with connection.cursor() as cur:
        cur.execute(sql, [limit])
        return [Difference(*row) for row in cur.fetchall()]


def batch_link_differences(limit: int = 1000) -> list[Difference]:
    """Batches and expirations whose copies disagree with the ledger: a batch's member must be its entry's member
    (the batch table keeps no foreign key for it; see loyalty.models.PointsBatch), reported as "batch's member"
    (cached: the batch's member id, ledger: its entry's); an active expiration must say where its span of the line
    of batches ends, within the line, reported as "expiration's span" (cached: its end, ledger: the member's batched
    points)."""
    sql = f"""
        SELECT b.member_id, COALESCE(m.email, ''), 'batch''s member', b.member_id, e.member_id
        FROM loyalty_pointsbatch b JOIN loyalty_ledgerentry e ON e.id = b.entry_id
        LEFT JOIN loyalty_member m ON m.id = b.member_id
        WHERE e.member_id <> b.member_id
        UNION ALL
        SELECT x.member_id, m.email, 'expiration''s span', x.spent_through, m.batched_points
        FROM loyalty_ledgerentry x JOIN loyalty_member m ON m.id = x.member_id
        WHERE x.kind = '{EntryKind.EXPIRATION}' AND x.status = 'active' AND (
            x.spent_through IS NULL OR x.spent_through + x.points < 0 OR x.spent_through > m.batched_points)
        LIMIT %s"""
    with connection.cursor() as cur:
        cur.execute(sql, [limit])
        return [Difference(*row) for row in cur.fetchall()]
