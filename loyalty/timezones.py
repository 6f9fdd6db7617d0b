"""The store's time zone: where the program's days start and end.

One setting (ProgramSettings.store_time_zone, TIME_ZONE from the environment by default) decides every day boundary
of the program: customer groups' date ranges, New conversions' "last 30 days", CSV dates written without an offset,
the nightly jobs' hour, and the back office's dates. Everything that needs a day boundary asks here.

The zone is read from the database at most once a minute per process (a CSV import asks for it on every row);
saving the program settings forgets it at once in the process that saved them, and other processes follow within
the minute.
"""

import threading
import time
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from datetime import time as day_time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.utils import timezone

CACHE_SECONDS = 60
# The years a date the program is given may fall in (a file's, a store's, a page's or a command's): both Python and
# the database hold them, in any time zone, with room for a day on either side.
FIRST_YEAR, LAST_YEAR = 1900, 2100
_cache = {"zone": None, "read_at": 0.0}  # shared by the process's threads
_held = threading.local()


def store_timezone() -> ZoneInfo:
    """The store's time zone; an unknown name in the settings row falls back to TIME_ZONE."""
    if held := getattr(_held, "zone", None):
        return held
    zone, read_at = _cache["zone"], _cache["read_at"]
    if zone is None or time.monotonic() - read_at > CACHE_SECONDS:
        zone = _read_zone()
        _cache.update(zone=zone, read_at=time.monotonic())
    return zone


def _read_zone() -> ZoneInfo:
    from .models import ProgramSettings

    name = ProgramSettings.objects.filter(pk=1).values_list("store_time_zone", flat=True).first()
    try:
        return ZoneInfo(name or settings.TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(settings.TIME_ZONE)


@contextmanager
def store_timezone_held():
    """Read the zone once and keep it for the block: inside, store_timezone() asks the database nothing. For code that
    asks for it while the connection can run no other query (a CSV import's rows streaming into a COPY)."""
    previous = getattr(_held, "zone", None)
    _held.zone = store_timezone()
    try:
        yield _held.zone
    finally:
        _held.zone = previous


def forget_store_timezone(**_kwargs) -> None:
    """Read the zone again next time (connected to ProgramSettings' post_save)."""
    _cache["zone"] = None


def day_refusal(day: date) -> str | None:
    """Why a day given by a person cannot be used (None when it can): outside FIRST_YEAR..LAST_YEAR."""
    if FIRST_YEAR <= day.year <= LAST_YEAR:
        return None
    return f"{day.isoformat()} is outside the years {FIRST_YEAR} to {LAST_YEAR}."


def store_today() -> date:
    """Today's date in the store's time zone."""
    return timezone.now().astimezone(store_timezone()).date()


def day_start(day: date) -> datetime:
    """The moment the day starts in the store's time zone (an aware datetime)."""
    return datetime.combine(day, day_time.min, tzinfo=store_timezone())


def day_after(day: date) -> datetime:
    """The moment the day ends (the next one starts): date ranges are inclusive, "until 31 May" means before 1 June."""
    return day_start(day + timedelta(days=1))


def in_store_time(value: datetime) -> datetime:
    """A date and time written without an offset, read as the store's local time (aware)."""
    if timezone.is_aware(value):
        return value
    return timezone.make_aware(value, store_timezone())
