"""Every admin address, for every role, over rows built from the worst inputs: each role gets the answer it should
(a page, or 403 where it may not look), and no address answers 500 whatever a row holds.

Rows: names and reasons with markup, right-to-left text and the longest values the fields hold; dates at the edges
(1900, 2100, and 9999-12-31 written straight to the database, as a database filled before the date checks holds;
on PostgreSQL, year 10000 and year 0 too); a webhook body nested 100,000 deep and one that is not JSON; an import
of a hostile file (control characters, a scientific-notation id, an ambiguous amount) with its error file; a failed
import; a Reward past actions run, a group action and their undo; coupons, reward tokens, tier history, RFM
scores, a locked-out login.
"""

import datetime
from decimal import Decimal

import pytest
from axes.models import AccessAttempt
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db import connection
from django.urls import URLPattern, reverse

from imports.models import ImportJob, ImportStatus
from imports.services.backfill import backfill_run_apply, backfill_run_create
from imports.services.jobs import import_job_fail
from loyalty.models import Coupon, CustomerGroup, EarnRuleKind, LedgerEntry, Member, Order, ProgramSettings
from loyalty.services import groups as group_services
from loyalty.services import points_adjust, reward_give
from loyalty.services.rfm import rfm_refresh
from loyalty.services.tokens import token_issue
from tests.factories import EarnRuleFactory, MemberFactory, OrderFactory, RewardFactory, UserFactory
from tests.imports.helpers import applied, upload
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

MARKUP = '<script>alert("x")</script>&amp; \u202eevil\u202c 🎉 ' + "Ω" * 40
UTC = datetime.UTC
EDGES = [
    datetime.datetime(1900, 1, 1, tzinfo=UTC),
    datetime.datetime(2100, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
]


def _worst_rows(tiers):
    actor = UserFactory(username="builder", is_superuser=True)
    ProgramSettings.load()
    EarnRuleFactory(name=MARKUP[:100], kind=EarnRuleKind.SIGNUP, points=10, points_per_currency_unit=None, hold_days=0)
    members = [
        MemberFactory(
            email=f"{'x' * (240 - len(str(i)))}{i}@s.example"[-254:],
            first_name=MARKUP[:150],
            last_name="ש" * 150,
            customer_id=f"6.54321E+1{i}",
            signed_up_at=edge,
        )
        for i, edge in enumerate(EDGES)
    ]
    Member.objects.filter(pk=members[-1].pk).update(signed_up_at=EDGES[-1])
    if connection.vendor == "postgresql":  # what a database filled before the date checks can hold: year 10000 UTC
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE loyalty_member SET signed_up_at = '9999-12-31T23:59:59-14:00' WHERE id = %s", [members[1].pk]
            )
    for member in members:
        points_adjust(member=member, points=10_000_000, reason=MARKUP + "r" * 300, actor=actor)
    reward = RewardFactory(name=MARKUP[:100], points_cost=1)
    reward_give(member=members[0], reward=reward, deduct_points=True, actor=actor, reason=MARKUP)
    token_issue(member=members[0], actor=actor)
    order = OrderFactory(member=members[0], total=Decimal("999999999999.99"), tags="t," * 400)
    Order.objects.filter(pk=order.pk).update(placed_at=EDGES[-1])
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("UPDATE loyalty_order SET placed_at = '0001-01-01 00:00+14' WHERE id = %s", [order.pk])
    OrderFactory(member=None, email="guest@s.example", placed_at=EDGES[0])
    rfm_refresh()
    group = CustomerGroup.objects.create(name=MARKUP[:100], is_static=True)
    group_services.group_static_members_add(group=group, text=" ".join(m.email for m in members))
    action = group_services.group_action_create(
        group=group, apply_type="relative", points=5, comment=MARKUP, actor=actor
    )
    group_services.group_action_run(action_id=action.pk)
    group_services.group_action_undo_request(action=action, actor=actor)
    group_services.group_action_undo(action_id=action.pk)
    run = backfill_run_create(actor=actor, queue=False)
    backfill_run_apply(run_id=run.pk)
    WebhookEvent.objects.create(
        store="shopify", topic="orders/paid", delivery_id="deep", body="[" * 100_000 + "]" * 100_000
    )
    WebhookEvent.objects.create(
        store="woocommerce", topic=MARKUP[:64], delivery_id="raw", body=MARKUP, headers={"x": MARKUP}, error=MARKUP
    )
    hostile = (
        "email,customer_id,points,reason,reference\n"
        f"{members[0].email},,5,{MARKUP},\n"
        f"{members[0].email},,6,bad\x00cell,\n"
        ",6.54321E+12,7,,\n"
        f'{members[1].email},,"1,234",,=HYPERLINK(1)\n'
    )
    applied(hostile, actor=actor, reason=MARKUP)
    failed = upload("email,points\nnobody@s.example,5\n", actor=actor)
    ImportJob.objects.filter(pk=failed.pk).update(status=ImportStatus.CHECKING)
    import_job_fail(job_id=failed.pk, message="The check stopped: " + MARKUP)
    AccessAttempt.objects.create(
        username=MARKUP[:255], ip_address="203.0.113.9", user_agent=MARKUP, failures_since_start=9, path_info="/x"
    )
    LedgerEntry.objects.count()  # the rows exist; the walk reads them back below


def _role_users():
    def in_role(name, role):
        user = UserFactory(username=name)
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return {
        "superuser": UserFactory(username="root", is_superuser=True),
        "manager": in_role("pm", "Program manager"),
        "agent": in_role("sa", "Support agent"),
        "no role": in_role("nobody", None),
    }


def _addresses():
    """(model admin, url name, kwargs) for every address of every registered model admin: its own pages for each
    row, its custom views (status JSON, downloads, undo, resume, ...) for each row, and its list and add pages."""
    for model, model_admin in admin.site._registry.items():
        rows = list(model._default_manager.order_by("-pk").values_list("pk", flat=True)[:4])
        for pattern in model_admin.get_urls():
            if not isinstance(pattern, URLPattern) or not pattern.name:
                continue
            params = list(pattern.pattern.converters)  # <int:pk>, <path:object_id>, <int:member_id>...
            if not params:
                yield model_admin, pattern.name, {}
                continue
            if pattern.pattern.converters[params[0]].regex == "[^/]+" and params[0] == "action":
                for action in ("reverse_conversion", "approve_pending", "reject_pending", "no_such_action"):
                    yield model_admin, pattern.name, {params[0]: action}
                continue
            for pk in rows:
                yield model_admin, pattern.name, {params[0]: pk}


def _request_for(user):
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = user
    return request


STANDARD = {"changelist": "view", "change": "view", "history": "view", "add": "add", "delete": "delete"}


def test_every_admin_address_answers_each_role_as_it_should_and_never_500(client, tiers, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    _worst_rows(tiers)
    users = _role_users()
    answers = {}
    for role, user in users.items():
        client.force_login(user)
        request = _request_for(user)
        for model_admin, name, kwargs in _addresses():
            url = reverse(f"admin:{name}", kwargs=kwargs)
            response = client.get(url)
            status = response.status_code
            answers[(role, url)] = status
            page = name.rsplit("_", 1)[-1]
            may_view = model_admin.has_view_permission(request)
            if not may_view:
                assert status == 403, f"{role} may not look at {model_admin.opts.label}, yet {url} answered {status}"
            elif page in STANDARD and STANDARD[page] == "view":
                # 302: a one-row list (program settings) opens its row
                assert status in (200, 302), f"{role} should see {url}, got {status}"
            else:
                assert status in (200, 302, 403, 404, 405), f"{role}: {url} answered {status}"
        client.logout()
    assert len(answers) > 400, "the walk covered the admin"
    # The worst rows' own pages render for those who may see them.
    member = Member.objects.order_by("-signed_up_at").first()
    client.force_login(users["agent"])
    assert client.get(reverse("admin:loyalty_member_change", args=[member.pk])).status_code == 200
    assert client.get(reverse("admin:loyalty_member_changelist") + "?q=6.54321").status_code == 200
    client.force_login(users["manager"])
    export = client.post(
        reverse("admin:loyalty_member_changelist"),
        {"action": "export_members_xlsx", "_selected_action": list(Member.objects.values_list("pk", flat=True))},
    )
    assert export.status_code == 200 and export["Content-Disposition"].startswith("attachment")
    event = WebhookEvent.objects.get(delivery_id="deep")
    client.force_login(users["manager"])
    page = client.get(reverse("admin:webhooks_webhookevent_change", args=[event.pk]))
    assert page.status_code == 200 and b"[[[[[[[[" in page.content, "the raw body is shown"


def test_a_staff_user_without_a_role_sees_nothing_of_the_program(client, tiers):
    client.force_login(_role_users()["no role"])
    index = client.get("/admin/")
    assert index.status_code == 200 and index.context["app_list"] == []
    for app in ("loyalty", "imports", "webhooks", "tiers", "accounts", "axes", "django_celery_beat"):
        assert client.get(f"/admin/{app}/").status_code == 404


@pytest.mark.parametrize(
    ("url", "action"),
    [
        ("/admin/loyalty/member/", "export_members_csv"),
        ("/admin/loyalty/member/", "export_members_xlsx"),
        ("/admin/loyalty/ledgerentry/", "export_entries_csv"),
        ("/admin/loyalty/coupon/", "export_coupons_xlsx"),
    ],
)
def test_exports_need_their_own_permission_managers_have_it_agents_do_not(client, tiers, url, action):
    actor = UserFactory(username="builder", is_superuser=True)
    member = MemberFactory()
    points_adjust(member=member, points=600, reason="x", actor=actor)
    reward_give(member=member, reward=RewardFactory(points_cost=1), deduct_points=False, actor=actor)
    model = {"member": Member, "ledgerentry": LedgerEntry, "coupon": Coupon}[url.split("/")[3]]
    ids = list(model.objects.values_list("pk", flat=True))
    users = _role_users()
    for role, expected_file in (("manager", True), ("superuser", True), ("agent", False)):
        client.force_login(users[role])
        listing = client.get(url)
        form = listing.context["action_form"]  # None when no action is left for the role
        offered = form is not None and action in dict(form.fields["action"].choices)
        response = client.post(url, {"action": action, "_selected_action": ids})
        is_file = response.get("Content-Disposition", "").startswith("attachment")
        assert (offered, is_file) == (expected_file, expected_file), role
