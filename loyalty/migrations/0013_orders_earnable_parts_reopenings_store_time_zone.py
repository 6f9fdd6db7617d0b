"""Orders keep what they are made of (goods, tax, shipping), so the program's settings decide what earns; refunds keep
what they returned (a refund recorded before this named no part: its money counts as a share of the whole order) and
when the program learnt of them. Orders count their reopenings after a revert. The program gets the store's time zone
(TIME_ZONE by default).

The new columns have database defaults too, so rows inserted by SQL (imports, benchmarks) need not name them.
"""

import django.db.models.functions.datetime
import django.utils.timezone
from django.db import migrations, models

import loyalty.models


def refunds_recorded_when_made(apps, schema_editor):
    OrderRefund = apps.get_model("loyalty", "OrderRefund")
    OrderRefund.objects.update(recorded_at=models.F("created_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0012_job_heartbeat_and_export_permissions"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="points_reverted",
            field=models.BooleanField(
                db_default=False,
                default=False,
                editable=False,
                help_text="Its points went back because it was cancelled, refunded or tagged; paid again, it earns again.",
                verbose_name="points taken back",
            ),
        ),
        migrations.AddField(
            model_name="order",
            name="prices_include_tax",
            field=models.BooleanField(db_default=False, default=False, verbose_name="prices include tax"),
        ),
        migrations.AddField(
            model_name="order",
            name="reopenings",
            field=models.PositiveIntegerField(
                db_default=0, default=0, editable=False, verbose_name="times reopened after a revert"
            ),
        ),
        migrations.AddField(
            model_name="order",
            name="shipping_amount",
            field=models.DecimalField(
                db_default=0, decimal_places=2, default=0, max_digits=14, verbose_name="shipping"
            ),
        ),
        migrations.AddField(
            model_name="order",
            name="shipping_tax_amount",
            field=models.DecimalField(
                db_default=0, decimal_places=2, default=0, max_digits=14, verbose_name="tax on shipping"
            ),
        ),
        migrations.AddField(
            model_name="order",
            name="tax_amount",
            field=models.DecimalField(
                db_default=0, decimal_places=2, default=0, max_digits=14, verbose_name="tax on goods"
            ),
        ),
        migrations.AddField(
            model_name="orderrefund",
            name="goods_amount",
            field=models.DecimalField(db_default=0, decimal_places=2, default=0, max_digits=14, verbose_name="goods"),
        ),
        migrations.AddField(
            model_name="orderrefund",
            name="recorded_at",
            field=models.DateTimeField(
                db_default=django.db.models.functions.datetime.Now(),
                default=django.utils.timezone.now,
                editable=False,
                verbose_name="recorded at",
            ),
        ),
        migrations.AddField(
            model_name="orderrefund",
            name="shipping_amount",
            field=models.DecimalField(
                db_default=0, decimal_places=2, default=0, max_digits=14, verbose_name="shipping"
            ),
        ),
        migrations.AddField(
            model_name="orderrefund",
            name="shipping_tax_amount",
            field=models.DecimalField(
                db_default=0, decimal_places=2, default=0, max_digits=14, verbose_name="tax on shipping"
            ),
        ),
        migrations.AddField(
            model_name="orderrefund",
            name="tax_amount",
            field=models.DecimalField(
                db_default=0, decimal_places=2, default=0, max_digits=14, verbose_name="tax on goods"
            ),
        ),
        migrations.AddField(
            model_name="programsettings",
            name="earn_on_shipping",
            field=models.BooleanField(
                default=False,
                help_text="Off: shipping earns nothing, and a shipping-only refund takes nothing back.",
                verbose_name="shipping earns points",
            ),
        ),
        migrations.AddField(
            model_name="programsettings",
            name="earn_on_tax",
            field=models.BooleanField(
                default=False,
                help_text="Off: an order earns on its goods after discounts, without tax. Refunds take back on the same base.",
                verbose_name="tax earns points",
            ),
        ),
        migrations.AddField(
            model_name="programsettings",
            name="store_time_zone",
            field=models.CharField(
                default=loyalty.models.environment_time_zone,
                help_text="Decides where a day starts and ends: customer groups' date ranges, “last 30 days”, CSV dates written without an offset, and the nightly jobs. For example America/New_York.",
                max_length=64,
                validators=[loyalty.models.validate_time_zone],
                verbose_name="store time zone",
            ),
        ),
        migrations.AlterField(
            model_name="order",
            name="earnable_amount",
            field=models.DecimalField(
                blank=True,
                decimal_places=2,
                help_text="Goods after discounts, without tax and shipping; empty: the total less tax and shipping.",
                max_digits=14,
                null=True,
                verbose_name="goods after discounts",
            ),
        ),
        migrations.RunPython(refunds_recorded_when_made, migrations.RunPython.noop),
    ]
