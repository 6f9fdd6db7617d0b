"""What every kind of upload has in common: its columns, the shared value parsers, the chunk result."""

import datetime
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from loyalty.timezones import FIRST_YEAR, LAST_YEAR, in_store_time

from .. import sql
from ..parsing import ImportFileError, RefusedRow

READY = "import_ready"
# Every kind's ready table ends with these, so problems and progress are read the same way.
PROBLEM_COLUMNS = (("problem", "text"), ("problem_column", "text"))
MAX_POINTS = 10**9
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# The years a date may have: both Python and the database hold them whatever the offset (9999-12-31 at -14:00 is
# year 10000 in UTC, which PostgreSQL stores and Python cannot read back).
# An id as a spreadsheet shows a long number it has cut to 15 digits: 6.54321E+12 (the sign is always written).
SCIENTIFIC_ID = re.compile(r"^[+-]?\d+(?:[.,]\d+)?[eE][+-]\d+$")
# Money: plain (1234, 1234.5, -12.00), a decimal comma (1234,50), or grouped in threes with the other mark as the
# decimal one (1,234.50 / 1.234,50 / 1,234,567 / 1.234.567).
PLAIN_AMOUNT = re.compile(r"^[+-]?\d+(?:[.,]\d+)?$")
GROUPED_COMMA = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
GROUPED_DOT = re.compile(r"^[+-]?\d{1,3}(?:\.\d{3})+(?:,\d+)?$")
# One mark then exactly three digits, after one to three digits not starting with 0: 1,234 and 1.234 are a thousands
# separator to some and a decimal mark to others.
AMBIGUOUS_AMOUNT = re.compile(r"^[+-]?[1-9]\d{0,2}[.,]\d{3}$")


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
    # Whether a points file's adjustments count toward lifetime (the upload's answer; None: they do).
    counts_toward_lifetime: bool | None = None
    # The table of the checked rows: the connection's own temporary one (READY), or the job's own table
    # (ImportJob.ready_table) when the job is split into member ranges that any worker applies.
    ready: str = READY


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
    # Whether a big job of this kind may be applied in member ranges (ImportRange): every row that applies has its
    # member when checked (the ready table's member_id), so each belongs to exactly one range. Not so for members
    # (a row may create its member) nor orders (a guest's order has none).
    splittable = False

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
        """(row number, cells) with every known column present: a column the file lacks reads as "". A row that
        parsing refused comes as (row number, RefusedRow): stage it with refused_row()."""
        n = len(table.header)
        positions = tuple(index.get(c, -1) for c in self.columns)
        for row, cells in table.rows:
            if type(cells) is RefusedRow:
                yield row, cells
                continue
            if len(cells) < n:
                cells.extend([""] * (n - len(cells)))
            cells.append("")
            yield row, [cells[i].strip() for i in positions]

    def normalise(self, table, index, ctx: Context):
        raise NotImplementedError

    def refused_row(self, row: int, refused: RefusedRow) -> tuple:
        """The staging row of a row refused as a whole: its number, empty values, and the problem with its column."""
        return (row, *([None] * (len(self.stage) - 3)), refused.problem, refused.column)

    def resolve(self, ctx: Context) -> None:
        """Fill the ready table (row_no, ..., problem, problem_column) from the job's parsed rows."""
        raise NotImplementedError

    def create_ready(self, ctx: Context, columns: tuple[tuple[str, str], ...]) -> None:
        """(Re)create the ready table: temporary, or the job's own persistent one when it is split."""
        sql.create_table(ctx.ready, columns, temp=ctx.ready == READY)

    def already_applied_sql(self, ctx: Context) -> str:
        """A condition on the ready table's alias `x`: the row is already applied."""
        return "1 = 0"

    def apply_chunk(self, ctx: Context, lo: int, hi: int, members: tuple[int, int] | None = None) -> ChunkResult:
        """Apply the ready rows lo < row_no <= hi without a problem, in file order; `members` (lo, hi member ids,
        inclusive) keeps only the rows of those members (one range of a split job, splittable kinds only)."""
        raise NotImplementedError


def in_chunk(lo: int, hi: int, alias: str = "", members: tuple[int, int] | None = None) -> str:
    """The ready rows of one chunk that have no problem, of the members in `members` when given (row numbers and
    member ids are ints, so safe to inline)."""
    a = f"{alias}." if alias else ""
    where = f"{a}problem IS NULL AND {a}row_no > {int(lo)} AND {a}row_no <= {int(hi)}"
    if members is not None:
        where += f" AND {a}member_id BETWEEN {int(members[0])} AND {int(members[1])}"
    return where


def clip(value: str, size: int = 40) -> str:
    return value if len(value) <= size else value[: size - 1] + "…"


def whole_number(text: str):
    """(points, problem): a signed whole number, as a spreadsheet writes it ("+5", "-20", "'-20" once escaped).

    A thousands separator or scientific notation is refused with the way to write it, never read as another number.
    """
    if not text:
        return None, _("points is empty")
    if text[0] == "'":
        text = text[1:]
    try:
        if "_" in text:
            raise ValueError
        value = int(text)
    except ValueError:
        if GROUPED_COMMA.match(text) or GROUPED_DOT.match(text):
            return None, _("“%(value)s” has a thousands separator: write the points without it, like %(plain)s") % {
                "value": clip(text),
                "plain": re.sub(r"[.,]", "", text),
            }
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
    """(Decimal or None, problem): a money amount, read one way only (README, "CSV formats").

    Accepted: 1234, 1234.50, a decimal comma (1234,50), and groups of three with the other mark as the decimal one
    (1,234.50, 1.234,50, 1,234,567). Refused with the way to write it: 1,234 and 1.234 (a thousands separator to
    some, a decimal mark to others), scientific notation (a spreadsheet's rounded display), anything else. Rounded
    to cents; at most 999,999,999,999.99.
    """
    if not text:
        return None, None
    if text[0] == "'":
        text = text[1:]
    if AMBIGUOUS_AMOUNT.match(text):
        return None, _(
            "“%(value)s” could be read two ways (a thousands separator or a decimal mark): write %(whole)s.00 "
            "or %(decimal)s, without a thousands separator"
        ) % {"value": clip(text), "whole": re.sub(r"[.,]", "", text), "decimal": text.replace(",", ".")}
    if PLAIN_AMOUNT.match(text):
        cleaned = text.replace(",", ".")
    elif GROUPED_COMMA.match(text):
        cleaned = text.replace(",", "")
    elif GROUPED_DOT.match(text):
        cleaned = text.replace(".", "").replace(",", ".")
    elif SCIENTIFIC_ID.match(text):
        return None, _(
            "“%(value)s” is in scientific notation, as a spreadsheet shows a long number: format the column as a "
            "number with 2 decimals (write 1234.00), then export it again"
        ) % {"value": clip(text)}
    else:
        return None, _("“%(value)s” is not an amount: write it like 1234.00") % {"value": clip(text)}
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None, _("“%(value)s” is not an amount: write it like 1234.00") % {"value": clip(text)}
    if abs(value) >= Decimal("1e12"):
        return None, _("“%(value)s” is more than an amount may be (999,999,999,999.99)") % {"value": clip(text)}
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), None


def id_problem(text: str, column: str):
    """A problem for an id cell (customer_id, order_id, token, reference) a spreadsheet has turned into a number,
    else None. The id is kept as written otherwise: leading zeros stay."""
    if ("E" in text or "e" in text) and SCIENTIFIC_ID.match(text):
        return _(
            "“%(value)s” is an id a spreadsheet turned into a number (scientific notation, so its last digits are "
            "lost): format the %(column)s column as text in the spreadsheet, type the ids again, and export it"
        ) % {"value": clip(text), "column": column}
    return None


def moment(text: str):
    """(aware datetime or None, problem): ISO 8601 dates ("2024-03-01" or "2024-03-01 14:30"); no offset: the
    store's time zone.

    Years outside FIRST_YEAR..LAST_YEAR are refused: with an offset, an edge year becomes one the database stores
    and Python cannot read back (every page showing it would fail).
    """
    if not text:
        return None, None
    try:
        value = datetime.datetime.fromisoformat(text.replace("/", "-"))
    except (ValueError, OverflowError):
        return None, _("“%(value)s” is not a date (write it as 2024-03-31 or 2024-03-31 14:30)") % {"value": clip(text)}
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        return None, _("“%(value)s” is outside the years %(first)s to %(last)s") % {
            "value": clip(text),
            "first": FIRST_YEAR,
            "last": LAST_YEAR,
        }
    if timezone.is_naive(value):
        value = in_store_time(value)  # no offset written: the store's local time (loyalty.timezones)
    return value, None


def email_problem(email: str):
    if len(email) > 254 or not EMAIL_RE.match(email):
        return _("“%(value)s” is not an email address") % {"value": clip(email)}
    return None
