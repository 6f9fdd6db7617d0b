"""Parsing forgives what spreadsheets do (BOM, semicolons, header case, blank lines, XLSX) and refuses what is wrong."""

import io

import pytest
from openpyxl import Workbook

from imports.models import ImportStatus
from imports.services.jobs import ImportJobError
from loyalty.models import LedgerEntry, Member
from tests.factories import MemberFactory
from tests.imports.helpers import applied, checked, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def members(tiers):
    return [MemberFactory(email="ann@shop.example"), MemberFactory(email="bob@shop.example")]


def test_bom_semicolons_header_case_spaces_and_blank_lines_are_read(members):
    text = "\ufeff Email ; POINTS ;Reason\r\n\r\nANN@shop.example ; +15 ; Gift\r\n;;\r\nbob@shop.example;-0003;x\r\n"
    job = applied(text.encode("utf-8"))
    assert job.status == ImportStatus.APPLIED
    assert (job.total, job.applied) == (2, 1)
    assert job.first_problems == [
        {"row": 5, "column": "", "reason": "Cannot take 3 points from bob@shop.example: only 0 are available."}
    ]
    assert Member.objects.get(email="ann@shop.example").available_points == 15


def test_a_file_in_another_encoding_is_refused_with_a_clear_message(members):
    job = checked("email,points,reason\nann@shop.example,5,Caf\xe9 cr\xe8me\n".encode("latin-1"))
    assert job.status == ImportStatus.FAILED
    assert job.error.startswith("The file is not UTF-8 encoded")
    assert "CSV UTF-8" in job.error
    assert LedgerEntry.objects.count() == 0


def test_a_missing_required_column_fails_the_whole_file_naming_it(members):
    job = checked("email,amount\nann@shop.example,5\n")
    assert job.status == ImportStatus.FAILED
    assert job.error.startswith("The file has no points column.")
    job = checked("mail,points\nann@shop.example,5\n")
    assert job.error.startswith("The file has no email or customer_id column.")


def test_members_kind_names_its_missing_column(members):
    job = checked("first_name,last_name\nAnn,Lee\n", kind="members")
    assert job.error.startswith("The file has no email column.")


def test_bad_cells_fail_their_row_with_row_number_column_and_reason(members):
    job = checked("email,points\nann@shop.example,1.5\nann@shop.example,\n,5\nann@shop.example,99999999999\n")
    assert [(p["row"], p["column"], p["reason"]) for p in job.first_problems] == [
        (2, "points", "“1.5” is not a whole number of points"),
        (3, "points", "points is empty"),
        (4, "email", "email and customer_id are both empty"),
        (5, "points", "99999999999 points is more than the 1,000,000,000 allowed in one row"),
    ]
    assert job.to_apply == 0


def test_a_reason_longer_than_an_entry_holds_fails_its_row(members):
    job = checked(f"email,points,reason\nann@shop.example,5,{'x' * 501}\nbob@shop.example,5,{'y' * 500}\n")
    assert [(p["row"], p["column"], p["reason"]) for p in job.first_problems] == [
        (2, "reason", "the reason is longer than 500 characters")
    ]
    assert job.to_apply == 1


def test_a_file_with_only_its_column_names_is_refused(members):
    job = checked("email,points,reason\n\n")
    assert job.status == ImportStatus.FAILED
    assert "no rows under its first row" in job.error


def test_a_column_named_twice_is_refused_naming_it(members):
    job = checked("email,points,points,notes,notes\nann@shop.example,5,7,a,b\n")
    assert job.status == ImportStatus.FAILED
    assert job.error == "The first row names points more than once: keep one column of each."
    assert not LedgerEntry.objects.exists()


def test_an_empty_file_is_refused(members):
    job = checked("\n\n")
    assert job.status == ImportStatus.FAILED
    assert "first line must name the columns" in job.error


def test_xlsx_files_are_read_like_csv(members):
    book = Workbook()
    sheet = book.active
    sheet.append(["Email", "Points", "Reason"])
    sheet.append(["ann@shop.example", 40, "From Excel"])
    sheet.append([None, None, None])
    sheet.append(["bob@shop.example", 2.0, None])
    data = io.BytesIO()
    book.save(data)
    job = applied(data.getvalue(), name="points.xlsx")
    assert (job.status, job.applied, job.total) == (ImportStatus.APPLIED, 2, 2)
    assert [m.available_points for m in Member.objects.order_by("email")] == [40, 2]


def test_an_xlsx_file_whose_sheet_is_cut_short_fails_with_the_reason(members):
    import zipfile

    book = Workbook()
    book.active.append(["Email", "Points", "Reason"])
    for i in range(200):
        book.active.append(["ann@shop.example", 1, f"row {i}"])
    whole = io.BytesIO()
    book.save(whole)
    damaged = io.BytesIO()
    with zipfile.ZipFile(whole) as source, zipfile.ZipFile(damaged, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data[: len(data) // 2]  # the sheet's XML stops mid-way
            target.writestr(item, data)
    job = checked(damaged.getvalue(), name="points.xlsx")
    assert job.status == ImportStatus.FAILED
    assert "of the Excel file cannot be read (the file may be damaged)" in job.error
    assert not LedgerEntry.objects.exists()


def test_old_excel_files_are_refused(members):
    job = checked(b"\xd0\xcf\x11\xe0" + b"\x00" * 100, name="old.xls")
    assert job.error.startswith("Old Excel (.xls) files are not supported")


def test_a_file_over_the_size_limit_is_refused_before_it_is_stored(members, settings):
    settings.IMPORT_MAX_UPLOAD_MB = 1
    with pytest.raises(ImportJobError, match="the largest file accepted is 1 MB"):
        upload("email,points\n" + "ann@shop.example,1\n" * 70_000)


def test_quoted_cells_with_delimiters_and_newlines(members):
    job = applied('email,points,reason\nann@shop.example,5,"Sorry, late ""parcel""\nsecond line"\n')
    entry = LedgerEntry.objects.get()
    assert entry.reason == 'Sorry, late "parcel"\nsecond line'
    assert job.applied == 1


def test_points_at_the_limit_with_signs_and_an_escaped_minus(members):
    job = applied(
        "email,points\n"
        "ann@shop.example,999999999\n"
        "ann@shop.example,1000000000\n"
        "ann@shop.example,1000000001\n"
        "ann@shop.example,'-20\n"
        "ann@shop.example,-0\n"
        "ann@shop.example,-7\n"
    )
    assert [(p["row"], p["column"], p["reason"]) for p in job.first_problems] == [
        (4, "points", "1000000001 points is more than the 1,000,000,000 allowed in one row"),
        (6, "points", "points must not be 0"),
    ]
    assert (job.applied, job.failed) == (4, 2)
    assert Member.objects.get(email="ann@shop.example").available_points == 999_999_999 + 1_000_000_000 - 20 - 7
