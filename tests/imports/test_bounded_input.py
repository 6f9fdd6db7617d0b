"""Hostile or broken files cost bounded work and fail by row, column and reason: control characters, a header of a
million columns, a row without end, an .xlsx that unpacks to gigabytes, dates no database round trip survives."""

import io
import time
import zipfile

import pytest
from openpyxl import Workbook

from imports.models import ImportStatus
from loyalty.models import Member, Order
from tests.factories import MemberFactory
from tests.imports.helpers import applied, checked

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\x08"])
def test_a_control_character_in_a_cell_fails_its_row_naming_the_column(tiers, char):
    MemberFactory(email="ann@shop.example")
    text = f"email,points,reason\nann@shop.example,5,ok\nann@shop.example,6,bad{char}reason\nann@shop.example,7,ok\n"
    job = applied(text)
    assert job.status == ImportStatus.APPLIED
    [problem] = job.first_problems
    assert (problem["row"], problem["column"]) == (3, "reason")
    assert f"U+{ord(char):04X}" in problem["reason"]
    assert Member.objects.get(email="ann@shop.example").available_points == 12


@pytest.mark.parametrize("kind", ["members", "orders", "tokens"])
def test_a_nul_byte_fails_its_row_in_every_kind(tiers, kind):
    header = {"members": "email", "orders": "order_id,total,placed_at", "tokens": "token,status"}[kind]
    row = {"members": "a\x00b@shop.example", "orders": "1\x00,5,2023-01-01", "tokens": "T\x001,closed"}[kind]
    job = checked(f"{header}\n{row}\n", kind=kind)
    assert job.status == ImportStatus.CHECKED, job.error
    assert job.first_problems[0]["row"] == 2 and "U+0000" in job.first_problems[0]["reason"]


def test_a_control_character_in_an_xlsx_cell_fails_its_row(tiers):
    book = Workbook()
    book.active.append(["email", "first_name"])
    book.active.append(["ann@shop.example", "A\x7fnn"])  # XML holds DEL (not NUL): the same rule applies
    out = io.BytesIO()
    book.save(out)
    job = checked(out.getvalue(), kind="members", name="m.xlsx")
    assert job.status == ImportStatus.CHECKED, job.error
    assert (job.first_problems[0]["row"], job.first_problems[0]["column"]) == (2, "first_name")


def test_a_header_of_a_million_columns_is_refused_before_any_row_is_read(tiers):
    header = ",".join(f"c{i}" for i in range(1_000_000))
    started = time.monotonic()
    job = checked(f"email,points,{header}\nann@shop.example,5\n")
    assert time.monotonic() - started < 20
    assert job.status == ImportStatus.FAILED
    assert job.error.startswith("The first row names more than 300 columns (")


def test_a_header_of_301_columns_is_refused_and_300_are_read(tiers):
    MemberFactory(email="ann@shop.example")
    names = [f"c{i}" for i in range(298)]
    job = applied("email,points," + ",".join(names) + "\nann@shop.example,5\n")
    assert job.status == ImportStatus.APPLIED
    job = checked("email,points," + ",".join([*names, "one_more"]) + "\nann@shop.example,5\n")
    assert job.error.startswith("The first row names more than 300 columns (301)")


def test_a_row_without_end_is_refused_naming_it(tiers):
    job = checked('email,points,reason\nann@shop.example,5,ok\nann@shop.example,5,"' + "x" * 5_000_000 + "\n")
    assert job.status == ImportStatus.FAILED
    assert job.error.startswith("Row 3 is longer than 4 MB")


def _zip_xlsx(parts: dict[str, bytes]) -> bytes:
    """A real workbook with some of its parts replaced (a bomb: highly compressible parts)."""
    book = Workbook()
    book.active.append(["email", "points"])
    book.active.append(["ann@shop.example", 5])
    plain = io.BytesIO()
    book.save(plain)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(plain.getvalue())) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, parts.pop(item.filename, src.read(item.filename)))
        for name, data in parts.items():
            dst.writestr(name, data)
    return out.getvalue()


def test_an_xlsx_that_unpacks_past_the_cap_is_refused_before_openpyxl_reads_it(tiers, settings):
    settings.IMPORT_XLSX_MAX_UNPACKED_MB = 5
    bomb = _zip_xlsx({"xl/media/padding.bin": b"\0" * (6 * 1024 * 1024)})
    assert len(bomb) < 100_000
    job = checked(bomb, name="bomb.xlsx")
    assert job.status == ImportStatus.FAILED
    assert job.error.startswith("The Excel file unpacks to 6 MB (0 MB of text); the most accepted is 5 MB")


def test_an_xlsx_whose_shared_strings_pass_their_cap_is_refused(tiers, settings):
    settings.IMPORT_XLSX_MAX_SHARED_STRINGS_MB = 1
    strings = (
        b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">' + b"<si><t>a</t></si>" * 200_000
    )
    job = checked(_zip_xlsx({"xl/sharedStrings.xml": strings + b"</sst>"}), name="strings.xlsx")
    assert job.status == ImportStatus.FAILED
    assert "(3 MB of text)" in job.error


def test_a_damaged_zip_is_a_plain_file_error(tiers):
    job = checked(b"PK\x03\x04" + b"garbage" * 100, name="broken.xlsx")
    assert job.status == ImportStatus.FAILED
    assert job.error.startswith("The Excel file cannot be read")


@pytest.mark.parametrize("date", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "1899-12-31", "2101-01-01"])
def test_dates_outside_1900_to_2100_are_refused_by_row(tiers, date):
    members = applied(f"email,signed_up_at\nann@shop.example,{date}\nbob@shop.example,2024-01-01\n", kind="members")
    assert [(p["row"], p["column"]) for p in members.first_problems] == [(2, "signed_up_at")]
    assert "outside the years 1900 to 2100" in members.first_problems[0]["reason"]
    assert not Member.objects.filter(email="ann@shop.example").exists()
    orders = applied(f"order_id,total,placed_at\n1,5,{date}\n2,5,2100-12-31T23:59:59-14:00\n", kind="orders")
    assert [(p["row"], p["column"]) for p in orders.first_problems] == [(2, "placed_at")]
    assert list(Order.objects.values_list("store_order_id", flat=True)) == ["2"]
    assert Order.objects.get().placed_at.year == 2101  # the edge still reads back
