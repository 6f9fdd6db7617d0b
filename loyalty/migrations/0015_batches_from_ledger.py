"""Earned batches for a ledger written before batches existed: each member's active entries replayed in the order
they became active (credits open batches, less what repays a balance below zero; debits spend the earliest first),
so open remainders add up to the available balance from the first day. Entries that expired before (none posted any)
need no care. The rules are written out here as they stood then: migration 0023 moved batches to a line of spent
points, and this migration must replay the same way whatever the rulebook says later."""

from django.db import migrations

CHUNK = 20_000  # members per read: memory stays flat on a big ledger


def replay(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM loyalty_pointsbatch")
        if cur.fetchone()[0]:
            return
        cur.execute("SELECT MIN(member_id), MAX(member_id) FROM loyalty_ledgerentry")
        low, high = cur.fetchone()
    if low is None:
        return
    for start in range(low, high + 1, CHUNK):
        with connection.cursor() as cur:
            cur.execute(
                """SELECT member_id, id, points, kind, COALESCE(status_changed_at, created_at) AS at
                   FROM loyalty_ledgerentry WHERE status = 'active' AND member_id >= %s AND member_id < %s
                   ORDER BY member_id, at, id""",
                [start, start + CHUNK],
            )
            made = _batches(cur.fetchall())
            for first in range(0, len(made), 5000):
                cur.executemany(
                    """INSERT INTO loyalty_pointsbatch (member_id, entry_id, earned_at, points, remaining,
                           expired_points, expiration_entry_id) VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                    made[first : first + 5000],
                )


def _batches(rows) -> list[list]:
    """Each member's active entries in the order they became active: credits open batches, debits spend them."""
    made, member, available, batches = [], None, 0, []
    for member_id, entry_id, points, kind, at in rows:
        if member_id != member:
            made.extend(batches)
            member, available, batches = member_id, 0, []
        available += points
        if points > 0:
            remaining = max(0, min(points, available))
            batches.append([member_id, entry_id, at, points, remaining, 0, None])
            continue
        open_batches = [b for b in batches if b[4] > 0]
        amount = -points
        for batch in open_batches:
            take = max(0, min(batch[4], amount))
            amount -= take
            batch[4] -= take
            if kind == "expiration":
                batch[5] += take
                batch[6] = entry_id
    made.extend(batches)
    return made


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0014_expiry_batches")]

    operations = [migrations.RunPython(replay, migrations.RunPython.noop)]
