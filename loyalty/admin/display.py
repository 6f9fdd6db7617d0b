"""How the back office writes amounts, dates and statuses, so every page says them the same way.

Dates and times use the active locale's formats (settings.LANGUAGE_CODE) and nothing else; amounts of money use the
locale's currency format from Babel ("$68.00", "68,00 €").
"""

import re
from decimal import Decimal

from babel.core import Locale
from babel.numbers import format_currency
from django.utils import formats, timezone
from django.utils.translation import get_language, ngettext, to_locale
from django.utils.translation import gettext as _

from ..models import EntryStatus, Order

DEFAULT_CURRENCY = "USD"  # the currency of an order that names none (Order.currency's default)


def _babel_locale() -> str:
    return to_locale(get_language() or "en-us")


def money(amount, currency: str) -> str:
    """An amount in its currency as the locale writes it: "$68.00"."""
    try:
        return format_currency(Decimal(amount), currency or DEFAULT_CURRENCY, locale=_babel_locale())
    except (ValueError, ArithmeticError):
        return f"{amount} {currency}"  # a currency code Babel does not know is still shown, as the store sent it


def one_unit(currency: str) -> str:
    """One unit of a currency, without cents: "$1", "1 €"."""
    locale = _babel_locale()
    pattern = Locale.parse(locale).currency_formats["standard"].pattern.split(";")[0]
    try:
        return format_currency(1, currency, format=re.sub(r"\.0+", "", pattern), locale=locale, currency_digits=False)
    except ValueError:
        return f"1 {currency}"


def store_currency() -> str:
    """The currency the store sells in: that of its latest order (a new store without orders: US dollars)."""
    latest = Order.objects.order_by("-placed_at").values_list("currency", flat=True).first()
    return latest or DEFAULT_CURRENCY


def points(count: int) -> str:
    return ngettext("%(count)s point", "%(count)s points", count) % {"count": f"{count:,}"}


def earning_text(*, fixed_points: int, per_unit, currency: str) -> str:
    """What a way to earn gives: "200 points", or "1 point per $1" ("2.5 points per $1")."""
    if per_unit:
        rate = Decimal(per_unit).normalize()
        rate_text = f"{rate:f}"
        count = 1 if rate == 1 else 2  # "1 point", "2.5 points"
        label = ngettext("%(rate)s point per %(unit)s", "%(rate)s points per %(unit)s", count)
        return label % {"rate": rate_text, "unit": one_unit(currency)}
    return points(fixed_points)


def day(value) -> str:
    """A date, or a moment's date in the current time zone, in the locale's date format."""
    if hasattr(value, "tzinfo") and value.tzinfo is not None:
        value = timezone.localtime(value)
    return formats.date_format(value, "DATE_FORMAT")


def status_text(entry) -> str:
    """An entry's status; a pending one says when its points become available (or that staff must approve them)."""
    if entry.status != EntryStatus.PENDING:
        return entry.get_status_display()
    if entry.hold_until:
        return _("Pending: available on %(date)s") % {"date": day(entry.hold_until)}
    return _("Pending: available once approved")
