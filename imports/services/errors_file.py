"""The error file: the rows that did not apply, with their original columns plus the row number and the reason.

It is written by streaming the stored upload again beside the job's problems (both in row order), so it costs no
memory whatever the file's size. Cells that a spreadsheet would run as a formula are escaped.
"""

import csv
import tempfile

from django.core.files import File

from ..models import ImportRowProblem
from .parsing import ImportFileError, RefusedRow, open_table

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
BATCH = 5000


def escape_cell(value) -> str:
    """Make a cell inert in a spreadsheet: a leading apostrophe stops = + - @ from starting a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _problems(job):
    """(row, reason) in row order, one per row, read in batches."""
    last = 0
    while True:
        batch = list(
            ImportRowProblem.objects.filter(job=job, row_number__gt=last)
            .order_by("row_number", "pk")
            .values_list("row_number", "column_name", "reason")[:BATCH]
        )
        if not batch:
            return
        for row, column, reason in batch:
            if row != last:
                yield row, f"{column}: {reason}" if column else reason
                last = row


def write_error_file(job) -> bool:
    """(Re)write the job's error file; False (and no file) when every row could apply."""
    if not ImportRowProblem.objects.filter(job=job).exists():
        if job.error_file:
            job.error_file.delete(save=False)
            type(job).objects.filter(pk=job.pk).update(error_file="")
        return False
    try:
        with open_table(job.file.path) as table, tempfile.TemporaryFile("w+b") as out:
            _write(table, _problems(job), out)
            out.seek(0)
            if job.error_file:
                job.error_file.delete(save=False)
            job.error_file.save(f"import-{job.pk}-errors.csv", File(out), save=False)
    except ImportFileError:
        return False
    type(job).objects.filter(pk=job.pk).update(error_file=job.error_file.name)
    return True


def _write(table, problems, out) -> None:
    import io

    text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="", write_through=True)
    writer = csv.writer(text, delimiter=table.delimiter)
    writer.writerow([escape_cell(c) for c in table.header] + ["row", "error"])
    wanted = next(problems, None)
    for row, cells in table.rows:
        while wanted and wanted[0] < row:
            wanted = next(problems, None)
        if wanted is None:
            break
        if wanted[0] == row:
            if type(cells) is RefusedRow:
                cells = cells.cells
            writer.writerow([escape_cell(c) for c in cells] + [row, escape_cell(wanted[1])])
    text.flush()
    text.detach()
