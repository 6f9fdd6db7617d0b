"""The program's scheduled jobs in django-celery-beat's database scheduler; the nightly ones keep the store's hours.

Celery beat reads each crontab in its own time zone, so "03:00" is 03:00 in the store's time zone (Program
settings), daylight saving included. Saving a new store time zone in the program settings moves them.
"""

from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from ..timezones import store_timezone

# name -> (task, schedule kind, schedule arguments). Other apps add theirs here as they arrive.
SCHEDULES = {
    "Release matured pending points": ("loyalty.release_matured_pending", "every", {"minutes": 10}),
    "Nightly ledger check": ("loyalty.reconcile_ledger_nightly", "crontab", {"hour": "3", "minute": "0"}),
    "Retry failed webhook events": ("webhooks.retry_failed_events", "every", {"minutes": 15}),
    "Nightly RFM scores": ("loyalty.rfm_refresh", "crontab", {"hour": "2", "minute": "30"}),
    "Queue silent background jobs again": ("imports.requeue_silent_jobs", "every", {"minutes": 5}),
    "Daily points expiry": ("loyalty.expire_points_daily", "crontab", {"hour": "1", "minute": "15"}),  # expiry.RUN_AT
    "Dashboard daily totals": ("loyalty.ledger_days_refresh", "every", {"minutes": 60}),
}


def periodic_tasks_setup() -> list[str]:
    """Create or update every scheduled job (safe to run again); returns a line per job for the command's output."""
    zone = store_timezone().key
    lines = []
    for name, (task, kind, when) in SCHEDULES.items():
        if kind == "every":
            interval, _ = IntervalSchedule.objects.get_or_create(every=when["minutes"], period=IntervalSchedule.MINUTES)
            defaults = {"task": task, "interval": interval, "crontab": None, "enabled": True}
        else:
            crontab, _ = CrontabSchedule.objects.get_or_create(
                minute=when["minute"],
                hour=when["hour"],
                day_of_week="*",
                day_of_month="*",
                month_of_year="*",
                timezone=zone,
            )
            defaults = {"task": task, "crontab": crontab, "interval": None, "enabled": True}
        PeriodicTask.objects.update_or_create(name=name, defaults=defaults)
        lines.append(
            f"scheduled: {name} ({task})"
            + (f" at {when['hour']}:{when['minute']:0>2} {zone}" if kind == "crontab" else "")
        )
    return lines
