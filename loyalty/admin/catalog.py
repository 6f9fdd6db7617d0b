"""The catalog and the program's configuration: rewards, coupons, ways to earn, program settings (one row).

Order stays registered here, minimal, until the orders area moves it to loyalty/admin/orders.py.
"""

import importlib.util

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy, ngettext

from imports.resources import ExportPermission, export_actions

from ..models import Coupon, EarnRule, Order, ProgramSettings, Reward
from ..services.expiry import Policy, expiry_impact, next_run_day
from ..services.schedules import periodic_tasks_setup
from ..timezones import store_timezone
from .action_pages import CappedCountPaginator
from .display import earning_text, store_currency


@admin.register(Reward)
class RewardAdmin(admin.ModelAdmin):
    list_display = ["name", "points_cost", "coupon_prefix", "active"]
    list_filter = ["active"]
    search_fields = ["name"]

    def has_delete_permission(self, request, obj=None):
        return False  # coupons point at it; make it inactive instead


@admin.register(Coupon)
class CouponAdmin(ExportPermission, admin.ModelAdmin):
    list_display = ["code", "member", "reward", "points_spent", "created_at", "disabled"]
    list_filter = ["disabled", "reward"]
    list_select_related = ["member", "reward"]
    search_fields = ["=code", "=member__email"]
    search_help_text = gettext_lazy("The exact coupon code or member's email.")
    raw_id_fields = ["member"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    actions = ["disable_coupons", *export_actions("coupons")]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False  # coupons are given with "Give reward", which deducts the points

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description=gettext_lazy("Disable coupons"), permissions=["change"])
    def disable_coupons(self, request, queryset):
        count = queryset.filter(disabled=False).update(disabled=True, disabled_at=timezone.now())
        self.message_user(
            request,
            ngettext("Disabled %(count)d coupon.", "Disabled %(count)d coupons.", count) % {"count": count},
            messages.SUCCESS,
        )


@admin.register(EarnRule)
class EarnRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "gives", "hold_days", "active"]
    list_filter = ["kind", "active"]

    def get_changelist_instance(self, request):
        self._currency = store_currency()  # once per list, not once per row
        return super().get_changelist_instance(request)

    @admin.display(description=gettext_lazy("gives"))
    def gives(self, rule):
        return earning_text(
            fixed_points=rule.points,
            per_unit=rule.points_per_currency_unit,
            currency=getattr(self, "_currency", None) or store_currency(),
        )

    def has_delete_permission(self, request, obj=None):
        return False  # entries point at it; make it inactive instead


class MinimalOrderAdmin(admin.ModelAdmin):
    list_display = ["__str__", "member", "total", "currency", "financial_status", "cancelled", "placed_at"]
    list_select_related = ["member"]
    raw_id_fields = ["member"]
    show_full_result_count = False
    paginator = CappedCountPaginator


# The orders area registers its own Order admin (loyalty/admin/orders.py); until that module exists, this one stands in.
if importlib.util.find_spec("loyalty.admin.orders") is None:
    admin.site.register(Order, MinimalOrderAdmin)


EXPIRY_FIELDS = ("expiry_policy", "expiry_period", "expiry_unit")


class ProgramSettingsForm(forms.ModelForm):
    """The settings; a change of the expiry policy shows first what it would expire at the next run, and applies
    when saved again with the box ticked."""

    expiry_confirmed = forms.BooleanField(
        label=gettext_lazy("Apply the new expiry policy"),
        required=False,
        help_text=gettext_lazy("Shown with what the new policy would expire at the next run; tick it and save again."),
    )

    class Meta:
        model = ProgramSettings
        fields = [*EXPIRY_FIELDS, "point_value"]  # the admin adds the fieldsets' others

    def clean(self):
        data = super().clean()
        if self.errors or not any(name in self.changed_data for name in EXPIRY_FIELDS):
            return data
        policy = Policy(data["expiry_policy"], data["expiry_period"], data["expiry_unit"])
        day = next_run_day()
        members, points = expiry_impact(policy, day)
        self.impact = (
            f"Under the new policy ({policy.describe()}), the run of {day:%Y-%m-%d} would expire "
            f"{points:,} points of {members:,} members."
        )
        if not data.get("expiry_confirmed"):
            raise forms.ValidationError(f"{self.impact} Tick “Apply the new expiry policy” and save again to apply it.")
        return data


@admin.register(ProgramSettings)
class ProgramSettingsAdmin(admin.ModelAdmin):
    """One row: the list goes straight to it; it cannot be added to or deleted."""

    form = ProgramSettingsForm
    readonly_fields = [
        "store_time_now",
        "expiring_at_next_run",
        "last_reconcile_at",
        "last_reconcile_ok",
        "last_reconcile_report",
    ]
    fieldsets = [
        (None, {"fields": ["program_name", "program_started_at", "hold_days_default", "support_agent_limit"]}),
        (
            gettext_lazy("Points expiry"),
            {
                "fields": [*EXPIRY_FIELDS, "expiry_confirmed", "expiring_at_next_run"],
                "description": gettext_lazy(
                    "Off by default. Every debit spends the earliest points first; pending points start their clock "
                    "when they become available. The daily run posts one expiration entry per member and never "
                    "lowers lifetime points or the tier."
                ),
            },
        ),
        (gettext_lazy("Liability"), {"fields": ["point_value"]}),
        (
            gettext_lazy("Store time zone"),
            {
                "fields": ["store_time_zone", "store_time_now"],
                "description": gettext_lazy(
                    "Every date in the back office is shown and read in this zone; it decides where a day starts "
                    "for customer groups, New conversions' last 30 days, CSV dates without an offset and the "
                    "nightly jobs."
                ),
            },
        ),
        (
            gettext_lazy("What an order earns on"),
            {
                "fields": ["earn_on_tax", "earn_on_shipping"],
                "description": gettext_lazy(
                    "By default an order earns on its goods after discounts, without tax and shipping. Refunds take "
                    "back on the same base, so a refund of shipping alone takes nothing while shipping does not earn."
                ),
            },
        ),
        (
            gettext_lazy("Negative balances"),
            {"fields": ["negative_balance_policy", "revert_negative_balance_policy"]},
        ),
        (
            gettext_lazy("Staff adjustments and the VIP tier"),
            {
                "fields": ["lifetime_counts_correction", "lifetime_counts_goodwill", "lifetime_counts_write_off"],
                "description": gettext_lazy(
                    "Whether an adjustment counts toward lifetime points (and so the tier) unless the staff member "
                    "answers otherwise on its form: by default a correction does, a goodwill credit and a write-off "
                    "do not, so setting a balance to 0 or a gift never moves a tier."
                ),
            },
        ),
        (
            gettext_lazy("Revert earned points"),
            {
                "fields": [
                    "revert_enabled",
                    "revert_on_cancelled",
                    "revert_on_refunded",
                    "revert_on_partially_refunded",
                    "revert_tags",
                ]
            },
        ),
        (
            gettext_lazy("Nightly ledger check"),
            {"fields": ["last_reconcile_at", "last_reconcile_ok", "last_reconcile_report"]},
        ),
    ]

    @admin.display(description=gettext_lazy("expiring at the next run"))
    def expiring_at_next_run(self, obj):
        policy = Policy.of(obj)
        if not policy.expires:
            return gettext_lazy("Nothing: points never expire.")
        day = next_run_day()
        members, points = expiry_impact(policy, day)
        return f"{points:,} points of {members:,} members on {day:%Y-%m-%d}"

    @admin.display(description=gettext_lazy("store time now"))
    def store_time_now(self, obj):
        zone = store_timezone()
        return f"{timezone.now().astimezone(zone):%Y-%m-%d %H:%M} ({zone.key})"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if "store_time_zone" in form.changed_data:
            periodic_tasks_setup()  # the nightly jobs keep the store's hours

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied  # before the redirect: a user without the permission learns nothing
        settings = ProgramSettings.load()
        return HttpResponseRedirect(reverse("admin:loyalty_programsettings_change", args=[settings.pk]))

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
