from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import migrations, models


def zone_of_the_stored_days(apps, schema_editor):
    """A mark stored so far was summed in the store's zone of now (as loyalty.timezones reads it): kept, so the pages
    need not sum the whole ledger until the next refresh."""
    name = apps.get_model("loyalty", "ProgramSettings").objects.filter(pk=1).values_list("store_time_zone", flat=True)
    try:
        zone = ZoneInfo(name.first() or settings.TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo(settings.TIME_ZONE)
    apps.get_model("loyalty", "LedgerDaysMark").objects.update(zone=zone.key)


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0021_ledger_days_mark"),
    ]

    operations = [
        migrations.AddField(
            model_name="ledgerdaysmark",
            name="zone",
            field=models.CharField(default="", max_length=64),
        ),
        migrations.RunPython(zone_of_the_stored_days, migrations.RunPython.noop),
    ]
