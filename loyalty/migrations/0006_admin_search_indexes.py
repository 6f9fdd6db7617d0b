"""Indexes behind the admin's searches and filters on a store of a million members and ten million entries.

PostgreSQL: trigram GIN indexes on UPPER(...) of email, names and customer id serve the admin's case-insensitive
"contains" search (Django's icontains is UPPER(col) LIKE UPPER(%term%)). SQLite has no trigram index: a "contains"
search scans the members table there, which is fine at demo sizes; the name index still serves sorting by name.
Built CONCURRENTLY on PostgreSQL so a live store keeps writing while they build (hence atomic = False).
The ledger list's newest-first order and its "by" filter get their own indexes on both databases.
"""

from django.db import migrations

SEARCHED = ["email", "first_name", "last_name", "customer_id"]

POSTGRES = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    *(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS member_{column}_trgm ON loyalty_member "
        f"USING gin (UPPER({column}) gin_trgm_ops)"
        for column in SEARCHED
    ),
]
BOTH = [
    "CREATE INDEX {concurrently} IF NOT EXISTS member_name ON loyalty_member (last_name, first_name)",
    "CREATE INDEX {concurrently} IF NOT EXISTS entry_newest ON loyalty_ledgerentry (created_at DESC, id DESC)",
    "CREATE INDEX {concurrently} IF NOT EXISTS entry_actor_user ON loyalty_ledgerentry (actor_user_id, created_at DESC) "
    "WHERE actor_user_id IS NOT NULL",
]
DROP = [
    *(f"DROP INDEX IF EXISTS member_{column}_trgm" for column in SEARCHED),
    "DROP INDEX IF EXISTS member_name",
    "DROP INDEX IF EXISTS entry_newest",
    "DROP INDEX IF EXISTS entry_actor_user",
]


def create(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    statements = POSTGRES if postgres else []
    statements += [s.format(concurrently="CONCURRENTLY" if postgres else "") for s in BOTH]
    for statement in statements:
        schema_editor.execute(statement)


def drop(apps, schema_editor):
    for statement in DROP:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("loyalty", "0005_leaner_ledger_indexes")]

    operations = [migrations.RunPython(create, drop)]
