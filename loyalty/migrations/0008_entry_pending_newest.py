"""The ledger list filtered to pending entries, newest first, read from an index in the list's own order.

entry_pending_hold (hold_until) serves the release job, not this list: without an index in (created_at, id) order
the planner either walks the whole ledger's newest-first index looking for pending rows (slow when few are pending)
or sorts every pending entry (slow when many are). A partial index holds only pending entries, so it stays small
and costs nothing on the active entries that make up most of the ledger.
Built CONCURRENTLY on PostgreSQL so a live store keeps writing while it builds (hence atomic = False).
"""

from django.db import migrations

CREATE = (
    "CREATE INDEX {concurrently} IF NOT EXISTS entry_pending_newest ON loyalty_ledgerentry (created_at DESC, id DESC) "
    "WHERE status = 'pending'"
)


def create(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    schema_editor.execute(CREATE.format(concurrently="CONCURRENTLY" if postgres else ""))


def drop(apps, schema_editor):
    schema_editor.execute("DROP INDEX IF EXISTS entry_pending_newest")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("loyalty", "0007_ledger_write_path")]

    operations = [migrations.RunPython(create, drop)]
