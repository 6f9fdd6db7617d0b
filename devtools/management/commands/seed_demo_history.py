"""manage.py seed_demo_history: pre-program customers and orders for the demo's "Reward past actions"."""

from django.core.management.base import BaseCommand

from devtools.demo_history import demo_history_seed
from loyalty.services.rfm import rfm_refresh


class Command(BaseCommand):
    help = "Add customers who signed up and ordered before the program started (run after seed_demo; idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--members", type=int, default=200)

    def handle(self, *args, members, **options):
        added = demo_history_seed(members=members)
        if not added["members"]:
            self.stdout.write("Pre-program history already there; nothing added.")
            return
        rfm_refresh()  # their orders count in the RFM segments from the start
        self.stdout.write(
            f"Added {added['members']} pre-program customers with {added['orders']} orders; "
            "run Reward past actions (Imports and backfills) to credit them."
        )
