from django.core.management.base import BaseCommand

from loyalty.management.arguments import positive_int
from loyalty.selectors import ledger_differences


class Command(BaseCommand):
    help = "Check every member's cached figures (available, pending, lifetime, tier) against the ledger."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=positive_int, default=1000, help="Report at most this many differences.")

    def handle(self, *args, limit, **options):
        differences = ledger_differences(limit=limit)
        if not differences:
            self.stdout.write(self.style.SUCCESS("The ledger reconciles: every cached figure equals the ledger."))
            return
        for difference in differences:
            self.stdout.write(str(difference))
        self.stderr.write(self.style.ERROR(f"{len(differences)} difference(s) between cached figures and the ledger."))
        raise SystemExit(1)
