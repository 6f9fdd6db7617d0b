from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_save


class LoyaltyConfig(AppConfig):
    name = "loyalty"
    verbose_name = "Loyalty program"

    def ready(self):
        from .pg_dates import register_safe_timestamp_loader

        connection_created.connect(register_safe_timestamp_loader, dispatch_uid="loyalty_safe_timestamps")
        from .models import ProgramSettings
        from .timezones import forget_store_timezone

        # A saved change of the store's time zone applies at once in this process (others follow within a minute).
        post_save.connect(forget_store_timezone, sender=ProgramSettings, dispatch_uid="forget_store_timezone")
