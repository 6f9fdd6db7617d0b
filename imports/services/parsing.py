"""Reading uploaded files row by row, never the whole file at once.

CSV: UTF-8 with or without a byte-order mark, comma or semicolon (sniffed from the header line), blank lines skipped.
XLSX: the first sheet, read in openpyxl's streaming mode. Row numbers are the spreadsheet's: the header is row 1.
Another encoding is refused with a message saying how to save the file as UTF-8 (no guessing: a wrong guess would
import wrong names silently).

The work per file is bounded whatever it holds, so a hostile or broken file cannot eat a worker:
* a header of more than MAX_COLUMNS columns is refused before any row is read;
* a CSV record (a row, with any quoted line breaks) longer than MAX_RECORD_CHARS is refused, read through a line
  reader that never holds more than that (a 200 MB file of one line costs no more memory than a short one);
* an XLSX file is refused when its parts would unpack to more than settings.IMPORT_XLSX_MAX_UNPACKED_MB, or its
  shared strings (which openpyxl holds in memory) to more than IMPORT_XLSX_MAX_SHARED_STRINGS_MB, read from the
  zip's directory before openpyxl opens it (zipfile never unpacks more than a part's declared size); its XML is
  parsed with defusedxml (openpyxl uses it when it is installed);
* a cell holding a NUL byte or another control character (PostgreSQL cannot store NUL in text; the others are
  invisible in a spreadsheet) refuses its row, naming the row and the column.
"""

import csv
import datetime
import io
import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import gettext as _

XLSX_MAGIC = b"PK\x03\x04"
XLS_MAGIC = b"\xd0\xcf\x11\xe0"
# A cell longer than this is refused as the whole file being wrong, not silently cut.
csv.field_size_limit(1024 * 1024)
# More columns than this is no export of a store or a CRM: the file is refused before its rows are read.
MAX_COLUMNS = 300
# One CSV record (a row with its quoted line breaks), in characters: a few full-size cells.
MAX_RECORD_CHARS = 4 * 1024 * 1024
# C0 control characters but tab, line feed and carriage return, and DEL: never in a name, an email or a number.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
CONTROL_SEARCH = CONTROL.search
SHARED_STRINGS = "xl/sharedStrings.xml"


class ImportFileError(Exception):
    """The whole file is refused (wrong encoding, a missing column...): nothing of it applies."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


class RefusedRow:
    """A row that parsing refuses as a whole (a control character in a cell): the kinds stage it with its problem;
    `cells` are the row's cells without their control characters, for the error file."""

    __slots__ = ("cells", "column", "problem")

    def __init__(self, column: str, problem: str, cells: list[str]):
        self.column, self.problem, self.cells = column, problem, cells


@dataclass
class Table:
    """An opened file: its header (as written), the delimiter, and an iterator of (row number, cells)."""

    header: list[str]
    delimiter: str
    rows: Iterator[tuple[int, list[str] | RefusedRow]]

    def column_index(self) -> dict[str, int]:
        """Header names in lower case without surrounding spaces -> position (the first one wins)."""
        index = {}
        for i, name in enumerate(self.header):
            index.setdefault(name.strip().lower(), i)
        return index

    def repeated_columns(self) -> list[str]:
        """Header names (as column_index reads them) that name more than one column."""
        counts = Counter(name.strip().lower() for name in self.header if name.strip())
        return sorted(name for name, n in counts.items() if n > 1)


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
    lines = _Lines(text)
    try:
        first = lines.peek()
    except UnicodeDecodeError:
        raise ImportFileError(_not_utf8(1)) from None
    if not first.strip():
        raise ImportFileError(_("The file is empty or its first line is blank: the first line must name the columns."))
    delimiter = ";" if first.count(";") > first.count(",") else ","
    if first.count(delimiter) >= MAX_COLUMNS:  # counted before csv splits it: linear, and the row may be huge
        counted = first.count(delimiter) + 1
        _refuse_columns(f"{counted:,}" if first.endswith("\n") else f"{counted:,}+")
    reader = csv.reader(lines, delimiter=delimiter)
    header = _next_record(reader, lines, 1)
    _check_header(header)
    return Table(header=header, delimiter=delimiter, rows=_csv_rows(reader, lines, header))


class _Lines:
    """The file's lines for the csv reader, each read with a length limit, counting the characters of the record
    being read: a record past MAX_RECORD_CHARS is refused before it fills memory. It also notes whether the record
    being read holds a control character (one search per line, no work per cell for the clean rows)."""

    def __init__(self, text):
        self.text = text
        self.record_chars = 0
        self.control = False
        self._peeked = None

    def peek(self) -> str:
        self._peeked = self.text.readline(MAX_RECORD_CHARS + 1)
        return self._peeked

    def start_record(self) -> None:
        self.record_chars, self.control = 0, False

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self._peeked is not None:
            line, self._peeked = self._peeked, None
        else:
            line = self.text.readline(MAX_RECORD_CHARS + 1)
        if not line:
            raise StopIteration
        self.record_chars += len(line)
        if self.record_chars > MAX_RECORD_CHARS:
            raise _RecordTooLong
        if CONTROL_SEARCH(line):
            self.control = True
        return line


class _RecordTooLong(Exception):
    pass


def _record_too_long(row: int) -> str:
    return _(
        "Row %(row)s is longer than %(max)s MB (a quote left open, or a cell that is not data): "
        "check the row in a text editor."
    ) % {"row": row, "max": MAX_RECORD_CHARS // (1024 * 1024)}


def _refuse_columns(count: str):
    raise ImportFileError(
        _("The first row names more than %(max)s columns (%(count)s): keep only the columns of the import.")
        % {"count": count, "max": MAX_COLUMNS}
    )


def _check_header(header: list[str]) -> None:
    if len(header) > MAX_COLUMNS:
        _refuse_columns(f"{len(header):,}")
    for position, name in enumerate(header, start=1):
        if CONTROL.search(name):
            raise ImportFileError(
                _("Column %(position)s of the first row holds a control character: %(detail)s.")
                % {"position": position, "detail": _control_detail(name)}
            )


def _control_detail(text: str) -> str:
    char = CONTROL.search(text).group()
    return _("U+%(code)04X, which a spreadsheet does not show and cannot be stored; remove it") % {"code": ord(char)}


def _refused_if_control(header: list[str], cells: list[str]):
    """None for a clean row, else a RefusedRow naming the first column with a control character."""
    if not CONTROL.search("".join(cells)):
        return None
    for position, cell in enumerate(cells):
        if CONTROL.search(cell):
            column = header[position].strip() if position < len(header) else ""
            column = column or _("column %(n)s") % {"n": position + 1}  # a column the first row does not name
            return RefusedRow(
                column[:50],
                _("the cell holds a control character (%(detail)s)") % {"detail": _control_detail(cell)},
                [CONTROL.sub("", c) for c in cells],
            )
    return None


def _not_utf8(row: int) -> str:
    # The decoder reads ahead in blocks, so the row is only where reading had got to: say "near".
    return _(
        "The file is not UTF-8 encoded (a character near row %(row)s is not UTF-8). In your spreadsheet choose "
        "“Save as… CSV UTF-8”, then upload it again."
    ) % {"row": row}


def _next_record(reader, lines: _Lines, row: int) -> list[str]:
    lines.start_record()
    try:
        return next(reader)
    except UnicodeDecodeError:
        raise ImportFileError(_not_utf8(row)) from None
    except _RecordTooLong:
        raise ImportFileError(_record_too_long(row)) from None
    except csv.Error as exc:
        raise ImportFileError(_("Row %(row)s cannot be read as CSV: %(error)s.") % {"row": row, "error": exc}) from None
    except StopIteration:
        return []


def _csv_rows(reader, lines: _Lines, header: list[str]) -> Iterator[tuple[int, list[str] | RefusedRow]]:
    row = 1
    while True:
        row += 1
        lines.start_record()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError:
            raise ImportFileError(_not_utf8(row)) from None
        except _RecordTooLong:
            raise ImportFileError(_record_too_long(row)) from None
        except csv.Error as exc:
            raise ImportFileError(
                _("Row %(row)s cannot be read as CSV: %(error)s.") % {"row": row, "error": exc}
            ) from None
        # Blank lines (and rows of empty cells, as spreadsheets save them) are skipped, but keep their number.
        if cells and any(cells):
            yield row, (lines.control and _refused_if_control(header, cells)) or cells


def _xlsx_table(path: str) -> Table:
    from openpyxl import load_workbook

    _check_xlsx_sizes(path)
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise ImportFileError(_("The Excel file cannot be read: %(error)s") % {"error": exc}) from None
    if not book.worksheets:
        book.close()
        raise ImportFileError(_("The Excel file has no sheet."))
    sheet = book.worksheets[0]
    values = sheet.iter_rows(values_only=True)
    header = [_cell_text(v) for v in _next_xlsx_row(book, values, 1) or ()]
    if not any(header):
        book.close()
        raise ImportFileError(_("The sheet is empty or its first row is blank: the first row must name the columns."))
    while header and not header[-1]:
        header.pop()  # a sheet's row can carry empty cells after its last column
    try:
        _check_header(header)
    except ImportFileError:
        book.close()
        raise
    return Table(header=header, delimiter=",", rows=_xlsx_rows(book, values, header))


def _check_xlsx_sizes(path: str) -> None:
    """Refuse an .xlsx whose parts would unpack past the caps, from the zip's own directory (nothing unpacked)."""
    max_total = settings.IMPORT_XLSX_MAX_UNPACKED_MB * 1024 * 1024
    max_strings = settings.IMPORT_XLSX_MAX_SHARED_STRINGS_MB * 1024 * 1024
    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ImportFileError(_("The Excel file cannot be read: %(error)s") % {"error": exc}) from None
    total = sum(part.file_size for part in parts)
    strings = sum(part.file_size for part in parts if part.filename == SHARED_STRINGS)
    if total > max_total or strings > max_strings:
        raise ImportFileError(
            _(
                "The Excel file unpacks to %(size)s MB (%(strings)s MB of text); the most accepted is %(max)s MB "
                "(%(max_strings)s MB of text). Save the sheet as CSV UTF-8, or split it."
            )
            % {
                "size": f"{total / 1024 / 1024:,.0f}",
                "strings": f"{strings / 1024 / 1024:,.0f}",
                "max": settings.IMPORT_XLSX_MAX_UNPACKED_MB,
                "max_strings": settings.IMPORT_XLSX_MAX_SHARED_STRINGS_MB,
            }
        )


def _xlsx_rows(book, values, header) -> Iterator[tuple[int, list[str] | RefusedRow]]:
    try:
        row = 1
        while (cells := _next_xlsx_row(book, values, row + 1)) is not None:
            row += 1
            texts = [_cell_text(v) for v in cells]
            if any(texts):
                yield row, _refused_if_control(header, texts) or texts
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
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float) and abs(value) >= 1e15:
        # A spreadsheet keeps 15 digits of a number: a longer id is already cut. Written as scientific notation, the
        # id and number checks refuse it with their advice instead of storing a wrong value.
        return f"{value:.15E}"
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value.isoformat()
    return str(value)
