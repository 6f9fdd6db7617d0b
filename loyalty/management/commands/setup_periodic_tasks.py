from django.core.management.base import BaseCommand

from loyalty.services.schedules import SCHEDULES, periodic_tasks_setup

__all__ = ["SCHEDULES", "Command"]


class Command(BaseCommand):
    help = (
        "Create or update the program's scheduled jobs in django-celery-beat's database scheduler (the nightly ones "
        "in the store's time zone)."
    )

    def handle(self, *args, **options):
        for line in periodic_tasks_setup():
            self.stdout.write(line)
