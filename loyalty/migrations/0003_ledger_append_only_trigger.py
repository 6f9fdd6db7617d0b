"""On PostgreSQL, the ledger refuses DELETE and any UPDATE but a pending entry's status move, whoever sends it."""

from django.db import migrations

# Every column but the three a status move may change.
FROZEN = [
    "id",
    "member_id",
    "points",
    "kind",
    "counts_toward_lifetime",
    "reason",
    "actor_user_id",
    "actor_system",
    "source",
    "source_ref",
    "earn_rule_id",
    "reverses_id",
    "takes_back_id",
    "idempotency_key",
    "hold_until",
    "created_at",
]

FORWARD = f"""
CREATE OR REPLACE FUNCTION loyalty_ledger_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger entries are append-only: DELETE of entry % refused', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.status = 'pending' AND NEW.status IN ('active', 'rejected')
       AND ({", ".join(f"NEW.{c}" for c in FROZEN)}) IS NOT DISTINCT FROM ({", ".join(f"OLD.{c}" for c in FROZEN)})
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'ledger entries are append-only: UPDATE of entry % refused (only a pending entry may move to '
                    'active or rejected)', OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER loyalty_ledger_append_only
    BEFORE UPDATE OR DELETE ON loyalty_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION loyalty_ledger_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS loyalty_ledger_append_only ON loyalty_ledgerentry;
DROP FUNCTION IF EXISTS loyalty_ledger_append_only();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0002_initial")]

    operations = [migrations.RunPython(forward, backward)]
