from django.db import migrations, models


def forget_unmarked_totals(apps, schema_editor):
    """Totals stored before the mark existed end with a partial day of unknown reach: beat's next refresh (within the
    hour) sums every day again and sets the mark; until then the pages sum the ledger itself."""
    apps.get_model("loyalty", "LedgerDay").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0020_batch_links_checked_by_reconcile"),
    ]

    operations = [
        migrations.CreateModel(
            name="LedgerDaysMark",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("through", models.DateTimeField()),
            ],
        ),
        migrations.RunPython(forget_unmarked_totals, migrations.RunPython.noop),
    ]
