"""A staff adjustment posted in one statement on PostgreSQL: lock, key check, entry, balances, tier and tier change.

The general single path (ledger.py) takes five round trips for an adjustment (BEGIN, lock, insert, update, COMMIT)
and builds each query through the ORM. Here one statement does it all; outside a transaction it is its own
transaction, so an adjustment costs one round trip and one commit (with an idempotency key: BEGIN, the lock, the
statement, COMMIT; see Concurrency). It takes only the common case: a relative adjustment that needs no
negative-balance policy (a credit, or a debit the balance covers) and a key not seen before.
Everything else (a member that does not exist, a debit beyond the balance, a key already posted, a key clash with a
concurrent post) writes nothing here and answers None, and the caller runs the general path, which words the outcome.

Concurrency: FOR UPDATE in the first step waits for another transaction holding the member and then reads the row as
that transaction left it (READ COMMITTED re-reads a locked row), so the new balance is computed from the latest one.
Other tables are read with the statement's snapshot, which can be older than the lock. So a post with an idempotency
key takes the member's lock in a statement of its own first: the key is then looked up after whatever the lock waited
for has committed (a shortfall recorded under the key holds no entry, so the ledger's unique key alone would not
refuse it). A post of the same key on another member at the same moment makes the INSERT fail on the unique key; the
statement writes nothing and the general path finds the key applied.
"""

from contextlib import nullcontext
from functools import cache

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from tiers.models import TierChange
from tiers.sql import tier_for_lifetime_sql

from ..models import EntryKind, EntryStatus, LedgerEntry, Member, Shortfall

_ENTRY_FIELDS = list(LedgerEntry._meta.concrete_fields)
_MEMBER_FIELDS = list(Member._meta.concrete_fields)


def _columns(alias: str, fields) -> str:
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(f.column)}" for f in fields)


@cache  # built once per process: the models' tables and columns do not change while it runs
def _statement() -> str:
    entry_table, member_table = LedgerEntry._meta.db_table, Member._meta.db_table
    change_table, shortfall_table = TierChange._meta.db_table, Shortfall._meta.db_table
    return f"""
        WITH m AS (
            SELECT id, available_points, lifetime_points, tier_id FROM {member_table}
            WHERE id = %(member)s FOR UPDATE
        ), ok AS (
            SELECT * FROM m
            WHERE (%(points)s > 0 OR m.available_points + %(points)s >= 0)
              AND NOT (%(key)s::text IS NOT NULL AND (
                  EXISTS (SELECT 1 FROM {entry_table} WHERE idempotency_key = %(key)s)
                  OR EXISTS (SELECT 1 FROM {shortfall_table} WHERE idempotency_key = %(key)s)))
        ), e AS (
            INSERT INTO {entry_table} (member_id, points, kind, status, counts_toward_lifetime, reason,
                actor_user_id, actor_system, source, source_ref, idempotency_key, created_at)
            SELECT ok.id, %(points)s, '{EntryKind.ADJUSTMENT}', '{EntryStatus.ACTIVE}', true, %(reason)s,
                %(actor_user_id)s, %(actor_system)s, %(source)s, %(source_ref)s, %(key)s, %(now)s
            FROM ok
            RETURNING {_columns(entry_table, _ENTRY_FIELDS)}
        ), u AS (
            UPDATE {member_table} SET
                available_points = ok.available_points + %(points)s,
                lifetime_points = ok.lifetime_points + %(points)s,
                tier_id = {tier_for_lifetime_sql("ok.lifetime_points + %(points)s")}
            FROM ok, e
            WHERE {member_table}.id = ok.id
            RETURNING {_columns(member_table, _MEMBER_FIELDS)}, ok.tier_id AS tier_before
        ), c AS (
            INSERT INTO {change_table} (member_id, from_tier_id, to_tier_id, lifetime_points, entry_id, reason,
                created_at)
            SELECT u.id, u.tier_before, u.tier_id, u.lifetime_points, e.id, %(tier_reason)s, %(now)s
            FROM u, e WHERE u.tier_id IS DISTINCT FROM u.tier_before
        )
        SELECT e.*, u.* FROM e, u"""


def adjust_in_one_statement(
    *, member_id: int, points: int, reason: str, who: dict, source: str, source_ref: int | None, key: str | None
):
    """(entry, member) when the adjustment was posted here; None when the caller must run the general path."""
    if connection.vendor != "postgresql":
        return None
    sql = _statement()
    params = {
        "member": member_id,
        "points": points,
        "reason": reason[:500],
        "tier_reason": reason[:255],
        "source": source,
        "source_ref": source_ref,
        "key": key,
        "now": timezone.now(),  # the moment of the post, as the general path stamps it (now() is the transaction's)
        **who,
    }
    # Without a key and outside a transaction the statement is its own transaction. Otherwise an atomic block (a
    # savepoint inside the caller's transaction) keeps a key clash from breaking it and holds the lock taken first.
    in_transaction = key is not None or connection.in_atomic_block or not connection.get_autocommit()
    try:
        with transaction.atomic() if in_transaction else nullcontext(), connection.cursor() as cursor:
            if key is not None:
                cursor.execute(f"SELECT 1 FROM {Member._meta.db_table} WHERE id = %s FOR UPDATE", [member_id])
            cursor.execute(sql, params)
            row = cursor.fetchone()
    except IntegrityError:
        return None
    if row is None:
        return None
    split = len(_ENTRY_FIELDS)
    entry = LedgerEntry.from_db(connection.alias, [f.attname for f in _ENTRY_FIELDS], row[:split])
    member_values = row[split : split + len(_MEMBER_FIELDS)]
    member = Member.from_db(connection.alias, [f.attname for f in _MEMBER_FIELDS], member_values)
    return entry, member
