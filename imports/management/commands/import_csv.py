"""The cron-friendly face of CSV imports: the same service as the admin, checked then applied in this process."""

from pathlib import Path

from django.core.files import File
from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from imports.models import ImportKind, ImportStatus
from imports.services.jobs import (
    ImportJobError,
    import_job_apply,
    import_job_check,
    import_job_create,
    import_job_start_apply,
)
from imports.services.kinds.points import MAX_REASON
from loyalty.errors import LoyaltyError


class Command(BaseCommand):
    help = (
        "Import a CSV or XLSX file (points, tokens, members or orders). Exit 0 when the file applied, 1 with the "
        "problems when it did not (a refused file, or rows that could not apply)."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--kind", required=True, choices=ImportKind.values)
        parser.add_argument("--reason", default="", help="Shown on every entry, unless a row gives its own reason.")
        parser.add_argument("--dry-run", action="store_true", help="Check the file and print the preview only.")
        parser.add_argument("--as", dest="username", help="The staff user the entries are recorded as.")
        parser.add_argument(
            "--change-kind",
            default="correction",
            choices=["correction", "goodwill", "write_off"],
            help="What kind of change a points file is (its default for counting toward lifetime).",
        )
        parser.add_argument(
            "--lifetime",
            choices=["yes", "no"],
            help="Whether the points count toward lifetime and so the tier (default: the program's for the kind).",
        )

    def handle(self, *args, path, kind, reason, dry_run, username, change_kind="correction", lifetime=None, **options):
        if len(reason) > MAX_REASON:
            raise CommandError(f"--reason is {len(reason)} characters long; an entry holds at most {MAX_REASON}.")
        actor = self._user(username)
        source = Path(path)
        if not source.is_file():
            raise CommandError(f"No file at {path}.")
        try:
            with source.open("rb") as handle:
                job = import_job_create(
                    kind=kind,
                    upload=File(handle, name=source.name),
                    reason=reason,
                    actor=actor,
                    change_kind=change_kind,
                    counts_toward_lifetime={"yes": True, "no": False}.get(lifetime),
                )
        except ImportJobError as exc:
            raise CommandError(str(exc)) from None
        job = import_job_check(job_id=job.pk)
        if job.status == ImportStatus.FAILED:
            self.stderr.write(f"Import #{job.pk}: the file was refused: {job.error}")
            raise SystemExit(1)
        self._preview(job)
        if dry_run:
            self._problems(job, job.problems)
            self.stdout.write("Dry run: nothing was applied.")
            raise SystemExit(1 if job.problems else 0)
        try:
            import_job_start_apply(job=job, actor=actor)  # the --as user needs the permission to apply imports
        except LoyaltyError as exc:
            raise CommandError(exc.message) from None
        job = import_job_apply(job_id=job.pk)
        self._summary(job)
        raise SystemExit(0 if job.status == ImportStatus.APPLIED and not job.failed else 1)

    def _user(self, username):
        if not username:
            return None
        user = User.objects.filter(username=username, is_staff=True, is_active=True).first()
        if user is None:
            raise CommandError(f"No active staff user {username!r}.")
        return user

    def _preview(self, job):
        if previous := job.previous_upload:
            self.stdout.write(f"This file was uploaded before as job #{previous.pk} ({previous.get_status_display()}).")
        self.stdout.write(
            f"Import #{job.pk} checked: {job.total:,} rows, {job.to_apply:,} to apply, "
            f"{job.already_applied:,} already applied, {job.problems:,} with problems."
        )
        if totals := job.preview_totals:
            counts = "count" if job.counts_toward_lifetime else "do not count"
            self.stdout.write(
                f"Applying it: +{totals['points_in']:,} / -{totals['points_out']:,} points, {totals['members']:,} "
                f"members, tiers {totals['tiers_up']:,} up and {totals['tiers_down']:,} down (its points {counts} "
                "toward lifetime)."
            )

    def _problems(self, job, count):
        for problem in job.first_problems:
            column = f" ({problem['column']})" if problem["column"] else ""
            self.stderr.write(f"Row {problem['row']}{column}: {problem['reason']}")
        if count > len(job.first_problems) and job.error_file:
            self.stderr.write(f"... and {count - len(job.first_problems):,} more in {job.error_file.path}")

    def _summary(self, job):
        self.stdout.write(
            f"Import #{job.pk} {job.get_status_display().lower()}: {job.applied:,} rows applied, {job.skipped:,} "
            f"skipped (already applied), {job.failed:,} failed; {job.points_credited:,} points credited, "
            f"{job.points_debited:,} debited, {job.members_touched:,} members touched."
        )
        self._problems(job, job.failed)
        if job.error:
            self.stderr.write(job.error)
