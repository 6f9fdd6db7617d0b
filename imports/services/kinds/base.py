"""What every kind of upload has in common: its columns, the shared value parsers, the chunk result."""

import datetime
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from loyalty.timezones import in_store_time

from ..parsing import ImportFileError

READY = "import_ready"
# Every kind's ready table ends with these, so problems and progress are read the same way.
PROBLEM_COLUMNS = (("problem", "text"), ("problem_column", "text"))
MAX_POINTS = 10**9
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class ChunkResult:
    applied: int = 0
    skipped: int = 0
    refused: int = 0
    points_credited: int = 0
    points_debited: int = 0


@dataclass
class Context:
    """What a kind needs to know about the job while checking and applying it."""

    job_id: int
    checksum: str
    reason: str
    upload_reason: str = ""
    actor: object = None
    # Set by the apply, chunk by chunk: no key "import:<checksum>:<row>" of this file can be on the ledger yet.
    file_keys_new: bool = False


class Kind:
    """One kind of upload. Subclasses give the columns and the SQL that checks and applies their rows."""

    name = ""
    columns: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()
    stage: tuple[tuple[str, str], ...] = ()
    undoable = False
    # normalise() gives None, never "", for an empty cell, so its rows can go through sql.load_rows (CSV COPY).
    rows_without_empty_strings = False

    def check_header(self, index: dict[str, int], repeated: list[str] = ()) -> None:
        """Fail the whole file at once, naming every missing column, or a column of this kind named twice (which of
        the two was meant cannot be told)."""
        if twice := [name for name in repeated if name in self.columns]:
            raise ImportFileError(
                _("The first row names %(names)s more than once: keep one column of each.")
                % {"names": ", ".join(twice)}
            )
        missing = [c for c in self.required if c not in index]
        if self.one_of and not any(c in index for c in self.one_of):
            missing.append(_(" or ").join(self.one_of))
        if missing:
            names = ", ".join(missing)
            raise ImportFileError(
                ngettext(
                    "The file has no %(names)s column. The first row must name the columns: %(expected)s.",
                    "The file has no %(names)s columns. The first row must name the columns: %(expected)s.",
                    len(missing),
                )
                % {"names": names, "expected": ", ".join(self.columns)}
            )

    def cells(self, table, index):
        """(row number, cells) with every known column present: a column the file lacks reads as ""."""
        n = len(table.header)
        positions = tuple(index.get(c, -1) for c in self.columns)
        for row, cells in table.rows:
            if len(cells) < n:
                cells.extend([""] * (n - len(cells)))
            cells.append("")
            yield row, [cells[i].strip() for i in positions]

    def normalise(self, table, index, ctx: Context):
        raise NotImplementedError

    def resolve(self, ctx: Context) -> None:
        """Fill the ready table (row_no, ..., problem, problem_column) from the job's parsed rows."""
        raise NotImplementedError

    def already_applied_sql(self, ctx: Context) -> str:
        """A condition on the ready table's alias `x`: the row is already applied."""
        return "1 = 0"

    def apply_chunk(self, ctx: Context, lo: int, hi: int) -> ChunkResult:
        raise NotImplementedError


def in_chunk(lo: int, hi: int, alias: str = "") -> str:
    """The ready rows of one chunk that have no problem (lo and hi are row numbers, so safe to inline)."""
    a = f"{alias}." if alias else ""
    return f"{a}problem IS NULL AND {a}row_no > {int(lo)} AND {a}row_no <= {int(hi)}"


def clip(value: str, size: int = 40) -> str:
    return value if len(value) <= size else value[: size - 1] + "…"


def whole_number(text: str):
    """(points, problem): a signed whole number, as a spreadsheet writes it ("+5", "-20", "'-20" once escaped)."""
    if not text:
        return None, _("points is empty")
    if text[0] == "'":
        text = text[1:]
    try:
        if "_" in text:
            raise ValueError
        value = int(text)
    except ValueError:
        return None, _("“%(value)s” is not a whole number of points") % {"value": clip(text)}
    if value == 0:
        return None, _("points must not be 0")
    if abs(value) > MAX_POINTS:
        return None, _("%(value)s points is more than the %(max)s allowed in one row") % {
            "value": text,
            "max": f"{MAX_POINTS:,}",
        }
    return value, None


def amount(text: str):
    """(Decimal or None, problem): a money amount; a decimal comma is accepted (European spreadsheets)."""
    if not text:
        return None, None
    if text[0] == "'":
        text = text[1:]
    cleaned = text.replace(",", ".") if "," in text and "." not in text else text
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None, _("“%(value)s” is not an amount") % {"value": clip(text)}
    if not value.is_finite() or abs(value) >= Decimal("1e12"):
        return None, _("“%(value)s” is not an amount") % {"value": clip(text)}
    return value.quantize(Decimal("0.01")), None


def moment(text: str):
    """(aware datetime or None, problem): ISO 8601 dates ("2024-03-01" or "2024-03-01 14:30"); no offset: the
    store's time zone."""
    if not text:
        return None, None
    try:
        value = datetime.datetime.fromisoformat(text.replace("/", "-"))
    except ValueError:
        return None, _("“%(value)s” is not a date (write it as 2024-03-31 or 2024-03-31 14:30)") % {"value": clip(text)}
    if timezone.is_naive(value):
        value = in_store_time(value)  # no offset written: the store's local time (loyalty.timezones)
    return value, None


def email_problem(email: str):
    if len(email) > 254 or not EMAIL_RE.match(email):
        return _("“%(value)s” is not an email address") % {"value": clip(email)}
    return None
