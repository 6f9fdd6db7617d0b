from django.core.management.base import BaseCommand
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

# name -> (task, schedule kind, schedule arguments). Other apps add theirs here as they arrive.
SCHEDULES = {
    "Release matured pending points": ("loyalty.release_matured_pending", "every", {"minutes": 10}),
    "Nightly ledger check": ("loyalty.reconcile_ledger_nightly", "crontab", {"hour": "3", "minute": "0"}),
    "Retry failed webhook events": ("webhooks.retry_failed_events", "every", {"minutes": 15}),
    "Nightly RFM scores": ("loyalty.rfm_refresh", "crontab", {"hour": "2", "minute": "30"}),
    "Queue silent background jobs again": ("imports.requeue_silent_jobs", "every", {"minutes": 5}),
}


class Command(BaseCommand):
    help = "Create or update the program's scheduled jobs in django-celery-beat's database scheduler."

    def handle(self, *args, **options):
        for name, (task, kind, when) in SCHEDULES.items():
            if kind == "every":
                interval, _ = IntervalSchedule.objects.get_or_create(
                    every=when["minutes"], period=IntervalSchedule.MINUTES
                )
                defaults = {"task": task, "interval": interval, "crontab": None, "enabled": True}
            else:
                crontab, _ = CrontabSchedule.objects.get_or_create(
                    minute=when["minute"], hour=when["hour"], day_of_week="*", day_of_month="*", month_of_year="*"
                )
                defaults = {"task": task, "crontab": crontab, "interval": None, "enabled": True}
            PeriodicTask.objects.update_or_create(name=name, defaults=defaults)
            self.stdout.write(f"scheduled: {name} ({task})")
