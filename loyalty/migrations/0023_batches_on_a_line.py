"""Batches written once: each stands on its member's line of batched points (`through`), and spending moves the
member's spent points along it (loyalty.rules.batch_spent) instead of rewriting the batches it takes from.

The line is the running sum of each member's batches in the spending order they had ((earned_at, id)); what is left of
each is then the part beyond the member's spent points, the same as the remainder the batch stored, since debits took
the earliest first. An expiration's end on the line is the last batch it expired. The ledger's append-only trigger
learns the new column (frozen, as every column but a status move's)."""

from django.db import migrations, models

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


def _trigger(columns) -> str:
    new, old = ", ".join(f"NEW.{c}" for c in columns), ", ".join(f"OLD.{c}" for c in columns)
    return f"""
CREATE OR REPLACE FUNCTION loyalty_ledger_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger entries are append-only: DELETE of entry % refused', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.status = 'pending' AND NEW.status IN ('active', 'rejected') AND ({new}) IS NOT DISTINCT FROM ({old})
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'ledger entries are append-only: UPDATE of entry % refused (only a pending entry may move to '
                    'active or rejected)', OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
"""


def lay_out(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    with schema_editor.connection.cursor() as cur:
        cur.execute(
            """UPDATE loyalty_pointsbatch SET through = r.t FROM (
                   SELECT id, SUM(points) OVER (PARTITION BY member_id ORDER BY earned_at, id
                                                ROWS UNBOUNDED PRECEDING) AS t
                   FROM loyalty_pointsbatch) r
               WHERE loyalty_pointsbatch.id = r.id"""
        )
        cur.execute(
            """UPDATE loyalty_member SET batched_points = b.total
               FROM (SELECT member_id, SUM(points) AS total FROM loyalty_pointsbatch GROUP BY member_id) b
               WHERE loyalty_member.id = b.member_id"""
        )
        if postgres:
            cur.execute("ALTER TABLE loyalty_ledgerentry DISABLE TRIGGER loyalty_ledger_append_only")
        cur.execute(
            """UPDATE loyalty_ledgerentry SET spent_through = x.t
               FROM (SELECT expiration_entry_id AS id, MAX(through) AS t FROM loyalty_pointsbatch
                     WHERE expiration_entry_id IS NOT NULL GROUP BY expiration_entry_id) x
               WHERE loyalty_ledgerentry.id = x.id"""
        )
        if postgres:
            cur.execute("ALTER TABLE loyalty_ledgerentry ENABLE TRIGGER loyalty_ledger_append_only")
            cur.execute(_trigger([*FROZEN, "spent_through"]))


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0022_ledger_days_mark_zone")]

    operations = [
        migrations.AddField(
            model_name="member",
            name="batched_points",
            field=models.BigIntegerField(db_default=0, default=0, editable=False, verbose_name="batched"),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="spent_through",
            field=models.BigIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="pointsbatch",
            name="through",
            field=models.BigIntegerField(null=True, verbose_name="batched through"),
        ),
        # Not reversible: the remainders it drops are the line's to compute now, and a column of them could not come
        # back without a default.
        migrations.RunPython(lay_out),
        migrations.RemoveConstraint(model_name="pointsbatch", name="batch_remaining_not_negative"),
        migrations.RemoveConstraint(model_name="pointsbatch", name="batch_remaining_le"),
        migrations.RemoveIndex(model_name="pointsbatch", name="batch_open_earned"),
        migrations.RemoveIndex(model_name="pointsbatch", name="batch_member_order"),
        migrations.RemoveField(model_name="pointsbatch", name="remaining"),
        migrations.RemoveField(model_name="pointsbatch", name="expired_points"),
        migrations.RemoveField(model_name="pointsbatch", name="expiration_entry"),
        migrations.AlterField(
            model_name="pointsbatch",
            name="through",
            field=models.BigIntegerField(verbose_name="batched through"),
        ),
        migrations.AddConstraint(
            model_name="pointsbatch",
            constraint=models.CheckConstraint(
                condition=models.Q(("through__gte", models.F("points"))), name="batch_through_ge_points"
            ),
        ),
        migrations.AddConstraint(
            model_name="pointsbatch",
            constraint=models.UniqueConstraint(fields=("member", "through"), name="batch_member_through"),
        ),
        migrations.AddIndex(
            model_name="pointsbatch",
            index=models.Index(fields=["member", "earned_at"], name="batch_member_earned"),
        ),
    ]
