"""manage.py backfill_past_actions [--dry-run]: the cron-friendly face of "Reward past actions"."""

from django.core.management.base import BaseCommand, CommandError

from imports.services.backfill import backfill_preview, backfill_run_apply, backfill_run_create
from loyalty.actors import SystemActor
from loyalty.errors import LoyaltyError


def preview_lines(preview) -> list[str]:
    lines = [f"Credits sign-ups and orders before {preview.program_started_at:%Y-%m-%d %H:%M %Z}."]
    for line in preview.lines:
        what = "members" if line.kind == "signup" else "orders"
        lines.append(f"  {line.name}: {line.credits:,} {what}, {line.points_total:,} points")
    lines.append(f"In all: {preview.members:,} members, {preview.orders:,} orders, {preview.points:,} points.")
    return lines


class Command(BaseCommand):
    help = "Reward past actions: credit sign-ups and orders from before the program started (--dry-run: preview)."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Show what would be credited; change nothing.")

    def handle(self, *args, dry_run, **options):
        preview = backfill_preview()
        for text in preview_lines(preview):
            self.stdout.write(text)
        if dry_run:
            self.stdout.write("Dry run: nothing credited.")
            return
        try:
            run = backfill_run_create(actor=SystemActor("manage.py backfill_past_actions"), queue=False)
        except LoyaltyError as error:
            raise CommandError(error.message) from None
        # A cron job wants the outcome: the run applies here, in this process, not on a worker.
        run = backfill_run_apply(run_id=run.pk)
        self.stdout.write(
            f"Run #{run.pk} {run.get_status_display().lower()}: {run.members_credited:,} members, "
            f"{run.orders_credited:,} orders, {run.points_credited:,} points "
            f"({run.already_credited:,} already credited before)."
        )
