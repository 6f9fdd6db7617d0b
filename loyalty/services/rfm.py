"""RFM scores: recency, frequency and monetary scores 1-5 by quintiles over the members with orders.

One set-based statement computes every member's figures from the orders that count (placed by a member, not
cancelled, not a test) and scores them with NTILE(5) window functions; 5 is best (most recent, most orders, most
spent). Ties are broken by member id so a refresh of unchanged data gives the same scores.

Segments (first rule that matches wins; R = recency, F = frequency, M = monetary):

    champions    R >= 4 and F >= 4 and M >= 4   bought recently, often, and spend the most
    loyal        R >= 3 and F >= 3              buy regularly and not long ago
    potential    R >= 3 (and F <= 2)            bought recently, but only once or twice so far
    at risk      R <= 2 and F >= 3              used to buy often, not lately
    hibernating  R = 2 (and F <= 2)             few orders, a while ago
    lost         R = 1 (and F <= 2)             few orders, long ago
"""

from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from ..models import MemberRFM, RFMSegment

# (segment, (R low, high), (F low, high), (M low, high)); the first rule that matches wins.
SEGMENT_RULES = (
    (RFMSegment.CHAMPIONS, (4, 5), (4, 5), (4, 5)),
    (RFMSegment.LOYAL, (3, 5), (3, 5), (1, 5)),
    (RFMSegment.POTENTIAL, (3, 5), (1, 5), (1, 5)),
    (RFMSegment.AT_RISK, (1, 2), (3, 5), (1, 5)),
    (RFMSegment.HIBERNATING, (2, 2), (1, 5), (1, 5)),
    (RFMSegment.LOST, (1, 1), (1, 5), (1, 5)),
)


@dataclass
class RFMResult:
    members_scored: int
    by_segment: dict[str, int]


def _segment_case() -> str:
    whens = []
    for segment, *ranges in SEGMENT_RULES:
        checks = " AND ".join(f"{score} BETWEEN {low} AND {high}" for score, (low, high) in zip("rfm", ranges))
        whens.append(f"WHEN {checks} THEN '{segment.value}'")
    return f"CASE {' '.join(whens)} END"


def segment_for(r: int, f: int, m: int) -> str:
    """The segment of one set of scores, by the same rules as the SQL."""
    for segment, *ranges in SEGMENT_RULES:
        if all(low <= score <= high for score, (low, high) in zip((r, f, m), ranges)):
            return segment.value
    raise ValueError(f"no segment for R{r} F{f} M{m}")


SCORED = "rfm_scored"
COLUMNS = ("last_order_at", "order_count", "total_spent", "recency", "frequency", "monetary", "segment")


def _score_sql() -> str:
    """Every member with orders that count, with figures, scores and segment."""
    return f"""
        SELECT member_id, last_order_at, order_count, total_spent, r AS recency, f AS frequency, m AS monetary,
               {_segment_case()} AS segment FROM (
            SELECT member_id, last_order_at, order_count, total_spent,
                   NTILE(5) OVER (ORDER BY last_order_at, member_id) AS r,
                   NTILE(5) OVER (ORDER BY order_count, member_id) AS f,
                   NTILE(5) OVER (ORDER BY total_spent, member_id) AS m
            FROM (
                SELECT member_id, MAX(placed_at) AS last_order_at, COUNT(*) AS order_count, SUM(total) AS total_spent
                FROM loyalty_order
                WHERE member_id IS NOT NULL AND NOT cancelled AND NOT test
                GROUP BY member_id
            ) figures
        ) scored"""


def rfm_refresh() -> RFMResult:
    """Recompute every member's scores in one transaction: readers see the old scores until it commits.

    The new scores are computed into a temporary table, then only the differences are written: rows whose figures
    changed are updated (computed_at says when a member's scores last changed), new members are added, members who no
    longer have orders that count are removed. A nightly refresh mostly rewrites few rows, and a rewrite of all rows
    never meets a million deleted keys in the table's unique index (what DELETE then INSERT of the same ids costs).
    """
    table = MemberRFM._meta.db_table
    changed = " OR ".join(f"{table}.{c} <> n.{c}" for c in COLUMNS)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic(), connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SET LOCAL work_mem = '256MB'")  # the three rankings sort in memory, not on disk
            cur.execute("SET LOCAL jit = off")  # compiling these statements costs more than it saves
        cur.execute(f"DROP TABLE IF EXISTS {SCORED}")
        cur.execute(f"CREATE TEMP TABLE {SCORED} AS {_score_sql()}")
        cur.execute(f"CREATE UNIQUE INDEX {SCORED}_member ON {SCORED} (member_id)")
        cur.execute(f"ANALYZE {SCORED}")
        cur.execute(
            f"DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM {SCORED} n WHERE n.member_id = {table}.member_id)"
        )
        cur.execute(
            f"""UPDATE {table} SET {", ".join(f"{c} = n.{c}" for c in COLUMNS)}, computed_at = %s
                FROM {SCORED} n WHERE {table}.member_id = n.member_id AND ({changed})""",
            [now],
        )
        # What is left in the temporary table is new. (An INSERT that looked for its rows in the table it fills would
        # scan that table once per row while it grows.)
        cur.execute(f"DELETE FROM {SCORED} WHERE member_id IN (SELECT member_id FROM {table})")
        cur.execute(
            f"""INSERT INTO {table} (member_id, {", ".join(COLUMNS)}, computed_at)
                SELECT member_id, {", ".join(COLUMNS)}, %s FROM {SCORED}""",
            [now],
        )
        cur.execute(f"DROP TABLE {SCORED}")
        cur.execute(f"SELECT segment, COUNT(*) FROM {table} GROUP BY segment")
        by_segment = dict(cur.fetchall())
    return RFMResult(members_scored=sum(by_segment.values()), by_segment=by_segment)
