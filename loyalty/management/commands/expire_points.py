from datetime import date

from django.core.management.base import BaseCommand, CommandError

from loyalty.services.expiry import points_expire
from loyalty.services.totals import after_expiry_run
from loyalty.timezones import day_refusal


def _day(text: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--as-of {text!r} is not a date: write it as YYYY-MM-DD.") from None
    if refusal := day_refusal(day):
        raise CommandError(f"--as-of {refusal}")
    return day


class Command(BaseCommand):
    help = (
        "Expire the points that are due under the program's expiry policy: one expiration entry per member, once "
        "per member and day (a second run of the day posts nothing)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count what would expire; write nothing.")
        parser.add_argument("--as-of", help="The run's day (YYYY-MM-DD, the store's time zone); today by default.")

    def handle(self, *args, dry_run, as_of, **options):
        run = points_expire(as_of=_day(as_of) if as_of else None, dry_run=dry_run)
        self.stdout.write(run.summary())
        if run.posted:
            after_expiry_run()  # the dashboard's totals and the report's expiry schedule follow at once
