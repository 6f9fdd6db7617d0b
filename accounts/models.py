from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """A staff member of the merchant (support agent, program manager) who signs in to the back office."""

    class Meta:
        db_table = "accounts_user"
        verbose_name = "staff user"
