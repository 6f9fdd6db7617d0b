from django.apps import AppConfig
from django.db.backends.signals import connection_created


class LoyaltyConfig(AppConfig):
    name = "loyalty"
    verbose_name = "Loyalty program"

    def ready(self):
        from .pg_dates import register_safe_timestamp_loader

        connection_created.connect(register_safe_timestamp_loader, dispatch_uid="loyalty_safe_timestamps")
