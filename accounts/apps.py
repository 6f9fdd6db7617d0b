from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Staff accounts"

    def ready(self):
        from .roles import roles_sync

        # Every app's post_migrate runs after its permissions exist; the sync is idempotent and cheap.
        post_migrate.connect(roles_sync, dispatch_uid="accounts.roles_sync")
