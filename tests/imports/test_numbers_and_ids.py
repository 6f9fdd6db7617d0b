"""CSV numbers and ids (issue 12, item 6): money is read one way only or refused with the way to write it, never
shrunk; ids a spreadsheet turned into scientific notation are refused; leading zeros stay. Every kind, CSV and XLSX."""

import io
from decimal import Decimal

import pytest
from openpyxl import Workbook

from imports.services.kinds.base import amount, whole_number
from loyalty.models import Member, Order, RewardToken
from tests.factories import MemberFactory
from tests.imports.helpers import applied, checked

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1234", "1234.00"),
        ("1234.5", "1234.50"),
        ("1234,50", "1234.50"),
        ("1,234.50", "1234.50"),
        ("1.234,50", "1234.50"),
        ("1,234,567", "1234567.00"),
        ("1.234.567", "1234567.00"),
        ("-12,5", "-12.50"),
        ("0,125", "0.13"),
        ("'19.90", "19.90"),
    ],
)
def test_amounts_that_can_be_read_one_way_only_are_read_that_way(text, value):
    assert amount(text) == (Decimal(value), None)


@pytest.mark.parametrize(
    ("text", "advice"),
    [
        ("1,234", "write 1234.00"),
        ("1.234", "write 1234.00"),
        ("-999,000", "write -999000.00"),
        ("1,23,456", "write it like 1234.00"),
        ("1.2E+5", "scientific notation"),
        ("$12", "write it like 1234.00"),
        ("12 345", "write it like 1234.00"),
        ("NaN", "write it like 1234.00"),
        ("1000000000000", "more than an amount may be"),
    ],
)
def test_amounts_that_could_be_misread_are_refused_with_the_way_to_write_them(text, advice):
    value, problem = amount(text)
    assert value is None
    assert advice in problem and text in problem


def test_points_with_a_thousands_separator_are_refused_with_the_plain_number():
    assert whole_number("1,234") == (None, "“1,234” has a thousands separator: write the points without it, like 1234")
    assert whole_number("1E+3")[1] == "“1E+3” is not a whole number of points"


def test_orders_csv_reads_grouped_totals_and_refuses_an_ambiguous_one_by_row(tiers):
    text = (
        "order_id,total,placed_at\n"
        '1001,"1,234.50",2023-05-01\n'
        "1002,1234,2023-05-01\n"
        '1003,"1,234",2023-05-01\n'
        "1004,6.54321E+12,2023-05-01\n"
    )
    job = applied(text, kind="orders")
    assert Order.objects.get(store_order_id="1001").total == Decimal("1234.50")
    assert Order.objects.get(store_order_id="1002").total == Decimal("1234.00")
    problems = {p["row"]: (p["column"], p["reason"]) for p in job.first_problems}
    assert problems[4][0] == "total" and "write 1234.00" in problems[4][1]
    assert problems[5][0] == "total" and "scientific notation" in problems[5][1]
    assert not Order.objects.filter(store_order_id__in=["1003", "1004"]).exists(), "never stored shrunk"


@pytest.mark.parametrize(
    ("kind", "text", "column"),
    [
        ("members", "email,customer_id\nann@shop.example,6.54321E+12\n", "customer_id"),
        ("orders", "order_id,total,placed_at\n1.00123E+15,5,2023-05-01\n", "order_id"),
        ("orders", "order_id,customer_id,total,placed_at\n77,6.54321E+12,5,2023-05-01\n", "customer_id"),
        ("points", "customer_id,points\n6.54321E+12,5\n", "customer_id"),
        ("points", "email,points,reference\nann@shop.example,5,1.2E+10\n", "reference"),
        ("tokens", "token,status\n4.1E+09,closed\n", "token"),
    ],
)
def test_an_id_in_scientific_notation_is_refused_with_the_advice_to_format_it_as_text(tiers, kind, text, column):
    MemberFactory(email="ann@shop.example")
    job = checked(text, kind=kind)
    assert job.to_apply == 0
    [problem] = job.first_problems
    assert problem["column"] == column
    assert "scientific notation" in problem["reason"] and f"format the {column} column as text" in problem["reason"]


def test_leading_zeros_of_ids_are_kept(tiers):
    applied("email,customer_id\nann@shop.example,000123\n", kind="members")
    assert Member.objects.get(email="ann@shop.example").customer_id == "000123"
    applied("order_id,customer_id,total,placed_at\n0042,000123,5,2023-05-01\n", kind="orders")
    order = Order.objects.get(store="csv")
    assert (order.store_order_id, order.member.email) == ("0042", "ann@shop.example")
    job = applied("customer_id,points\n000123,7\n123,7\n", kind="points")
    assert Member.objects.get(email="ann@shop.example").available_points == 7
    assert [p["reason"] for p in job.first_problems] == ["no member has the customer id 123"]


def _xlsx(rows) -> bytes:
    book = Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_xlsx_follows_the_same_rules(tiers):
    data = _xlsx(
        [
            ["email", "customer_id", "first_name"],
            ["ann@shop.example", "000123", "Ann"],  # a text cell: zeros kept
            ["bob@shop.example", 6543210000000000000, "Bob"],  # a number past 15 digits: already cut by Excel
            ["cy@shop.example", "6.54321E+12", "Cy"],
        ]
    )
    job = applied(data, kind="members", name="members.xlsx")
    assert Member.objects.get(email="ann@shop.example").customer_id == "000123"
    assert [(p["row"], p["column"]) for p in job.first_problems] == [(3, "customer_id"), (4, "customer_id")]
    assert not Member.objects.filter(email__in=["bob@shop.example", "cy@shop.example"]).exists()
    orders = _xlsx([["order_id", "total", "placed_at"], ["A1", "1,234", "2023-05-01"], ["A2", 1234.5, "2023-05-01"]])
    job = applied(orders, kind="orders", name="orders.xlsx")
    assert Order.objects.get(store_order_id="A2").total == Decimal("1234.50")
    assert "write 1234.00" in job.first_problems[0]["reason"]


def test_token_amounts_follow_the_money_rules(tiers):
    assert RewardToken.objects.count() == 0
    job = checked('token,status,amount\nT1,closed,"2,500"\n', kind="tokens")
    assert job.first_problems[0]["column"] == "amount"
    assert "write 2500.00" in job.first_problems[0]["reason"]
