"""Reading uploaded files row by row, never the whole file at once.

CSV: UTF-8 with or without a byte-order mark, comma or semicolon (sniffed from the header line), blank lines skipped.
XLSX: the first sheet, read in openpyxl's streaming mode. Row numbers are the spreadsheet's: the header is row 1.
Another encoding is refused with a message saying how to save the file as UTF-8 (no guessing: a wrong guess would
import wrong names silently).
"""

import csv
import datetime
import io
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.utils.translation import gettext as _

XLSX_MAGIC = b"PK\x03\x04"
XLS_MAGIC = b"\xd0\xcf\x11\xe0"
# A cell longer than this is refused as the whole file being wrong, not silently cut.
csv.field_size_limit(1024 * 1024)


class ImportFileError(Exception):
    """The whole file is refused (wrong encoding, a missing column...): nothing of it applies."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


@dataclass
class Table:
    """An opened file: its header (as written), the delimiter, and an iterator of (row number, cells)."""

    header: list[str]
    delimiter: str
    rows: Iterator[tuple[int, list[str]]]

    def column_index(self) -> dict[str, int]:
        """Header names in lower case without surrounding spaces -> position (the first one wins)."""
        index = {}
        for i, name in enumerate(self.header):
            index.setdefault(name.strip().lower(), i)
        return index

    def repeated_columns(self) -> list[str]:
        """Header names (as column_index reads them) that name more than one column."""
        names = [name.strip().lower() for name in self.header if name.strip()]
        return sorted({name for name in names if names.count(name) > 1})


@contextmanager
def open_table(path: str):
    """Open a stored upload as a Table; raise ImportFileError for what cannot be read."""
    with open(path, "rb") as raw:
        magic = raw.read(4)
        raw.seek(0)
        if magic == XLSX_MAGIC:
            yield _xlsx_table(path)
        elif magic == XLS_MAGIC:
            raise ImportFileError(_("Old Excel (.xls) files are not supported: save the sheet as .xlsx or CSV UTF-8."))
        else:
            yield _csv_table(raw)


def _csv_table(raw) -> Table:
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    try:
        first = text.readline()
    except UnicodeDecodeError:
        raise ImportFileError(_not_utf8(1)) from None
    if not first.strip():
        raise ImportFileError(_("The file is empty or its first line is blank: the first line must name the columns."))
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(itertools.chain([first], text), delimiter=delimiter)
    header = _next_record(reader, 1)
    return Table(header=header, delimiter=delimiter, rows=_csv_rows(reader))


def _not_utf8(row: int) -> str:
    # The decoder reads ahead in blocks, so the row is only where reading had got to: say "near".
    return _(
        "The file is not UTF-8 encoded (a character near row %(row)s is not UTF-8). In your spreadsheet choose "
        "“Save as… CSV UTF-8”, then upload it again."
    ) % {"row": row}


def _next_record(reader, row: int) -> list[str]:
    try:
        return next(reader)
    except UnicodeDecodeError:
        raise ImportFileError(_not_utf8(row)) from None
    except csv.Error as exc:
        raise ImportFileError(_("Row %(row)s cannot be read as CSV: %(error)s.") % {"row": row, "error": exc}) from None


def _csv_rows(reader) -> Iterator[tuple[int, list[str]]]:
    row = 1
    while True:
        row += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError:
            raise ImportFileError(_not_utf8(row)) from None
        except csv.Error as exc:
            raise ImportFileError(
                _("Row %(row)s cannot be read as CSV: %(error)s.") % {"row": row, "error": exc}
            ) from None
        # Blank lines (and rows of empty cells, as spreadsheets save them) are skipped, but keep their number.
        if cells and any(cells):
            yield row, cells


def _xlsx_table(path: str) -> Table:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise ImportFileError(_("The Excel file cannot be read: %(error)s") % {"error": exc}) from None
    sheet = book.worksheets[0]
    values = sheet.iter_rows(values_only=True)
    header = [_cell_text(v) for v in _next_xlsx_row(book, values, 1) or ()]
    if not any(header):
        book.close()
        raise ImportFileError(_("The sheet is empty or its first row is blank: the first row must name the columns."))
    return Table(header=header, delimiter=",", rows=_xlsx_rows(book, values))


def _xlsx_rows(book, values) -> Iterator[tuple[int, list[str]]]:
    try:
        row = 1
        while (cells := _next_xlsx_row(book, values, row + 1)) is not None:
            row += 1
            texts = [_cell_text(v) for v in cells]
            if any(texts):
                yield row, texts
    finally:
        book.close()


def _next_xlsx_row(book, values, row: int):
    """The next row of the sheet, or None at its end; a damaged sheet (cut short, bad XML) is a file problem that
    names the row, not a crash that leaves the job checking."""
    try:
        return next(values, None)
    except Exception as exc:  # openpyxl and its XML parser raise many types for a damaged sheet
        book.close()
        raise ImportFileError(
            _("Row %(row)s of the Excel file cannot be read (the file may be damaged): %(error)s")
            % {"row": row, "error": exc}
        ) from None


def _cell_text(value) -> str:
    """A spreadsheet cell as the text a CSV would hold (5.0 -> "5", dates in ISO 8601)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value.isoformat()
    return str(value)
