"""The back office shows and reads dates in the store's time zone (loyalty.timezones)."""

from django.urls import reverse
from django.utils import timezone

from .timezones import store_timezone


class StoreTimeZoneMiddleware:
    """Activate the store's time zone for the admin's pages, so every date shown or typed there is the store's."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.admin_prefix = None

    def __call__(self, request):
        if self.admin_prefix is None:
            self.admin_prefix = reverse("admin:index")
        if not request.path.startswith(self.admin_prefix):
            return self.get_response(request)
        timezone.activate(store_timezone())
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
