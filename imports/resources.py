"""django-import-export where it serves: the admin export of members, ledger entries and coupons (CSV and XLSX).

The member, entry and coupon admins live in loyalty/admin; they add exports with one line each:

    from imports.resources import export_actions
    actions = [..., *export_actions("members")]      # or "entries", "coupons"

The exports escape cells a spreadsheet would run as a formula (= + - @) whatever the settings say; setting
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = True does the same for import-export's own export views.

PointsAdjustmentResource is django-import-export's documented row-by-row import applied to point adjustments
(each row through the ledger's single path); bench_import measures it against the bulk import.
"""

import re

from django.contrib import admin
from django.http import HttpResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from import_export import fields, resources
from import_export.formats.base_formats import CSV, XLSX

from loyalty.actors import SystemActor
from loyalty.models import Coupon, EntrySource, LedgerEntry, Member

from .services.errors_file import escape_cell

NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


class MemberResource(resources.ModelResource):
    tier = fields.Field(attribute="tier__name", column_name="tier")

    class Meta:
        model = Member
        fields = (
            "email",
            "customer_id",
            "first_name",
            "last_name",
            "signed_up_at",
            "available_points",
            "pending_points",
            "lifetime_points",
            "tier",
            "created_at",
        )
        export_order = fields
        import_id_fields = ("email",)


class LedgerEntryResource(resources.ModelResource):
    member = fields.Field(attribute="member__email", column_name="member")
    by = fields.Field(column_name="by")

    class Meta:
        model = LedgerEntry
        fields = (
            "id",
            "created_at",
            "member",
            "points",
            "kind",
            "status",
            "counts_toward_lifetime",
            "reason",
            "by",
            "source",
            "source_ref",
            "reverses",
            "idempotency_key",
            "hold_until",
        )
        export_order = fields

    def dehydrate_by(self, entry):
        return entry.actor_label


class CouponResource(resources.ModelResource):
    member = fields.Field(attribute="member__email", column_name="member")
    reward = fields.Field(attribute="reward__name", column_name="reward")

    class Meta:
        model = Coupon
        fields = ("code", "member", "reward", "points_spent", "disabled", "created_at")
        export_order = fields


RESOURCES = {
    "members": (MemberResource, ["tier"]),
    "entries": (LedgerEntryResource, ["member", "actor_user"]),
    "coupons": (CouponResource, ["member", "reward"]),
}


def export_response(name: str, queryset, file_format: str = "csv") -> HttpResponse:
    """The queryset as a CSV or XLSX download, formula cells escaped."""
    resource_class, related = RESOURCES[name]
    dataset = resource_class().export(queryset.select_related(*related))
    for i, row in enumerate(dataset):
        dataset[i] = tuple(_escape(v) for v in row)
    fmt = XLSX() if file_format == "xlsx" else CSV()
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response = HttpResponse(fmt.export_data(dataset), content_type=fmt.get_content_type())
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.{fmt.get_extension()}"'
    return response


def _escape(value):
    """Escape formula cells; a plain signed number ("-120") is data, not a formula, and stays as it is."""
    if not isinstance(value, str) or NUMBER.match(value):
        return value
    return escape_cell(value)


class ExportPermission:
    """For a ModelAdmin with export_actions(): the exports need their own permission, `<app>.export_<model>`
    (loyalty.export_member, export_ledgerentry, export_coupon). Program managers have it; support agents do not
    (a support agent looks members up one at a time; a file of every member and coupon code is another matter)."""

    def has_export_permission(self, request):
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.export_{opts.model_name}")


def export_actions(name: str) -> list:
    """Two admin actions exporting the selected rows: CSV and XLSX. The ModelAdmin mixes in ExportPermission:
    Django shows the actions only to those who have it and refuses them to anyone else."""

    @admin.action(description=_("Export selected to CSV"), permissions=["export"])
    def export_csv(modeladmin, request, queryset):
        return export_response(name, queryset, "csv")

    @admin.action(description=_("Export selected to Excel (XLSX)"), permissions=["export"])
    def export_xlsx(modeladmin, request, queryset):
        return export_response(name, queryset, "xlsx")

    export_csv.__name__ = f"export_{name}_csv"
    export_xlsx.__name__ = f"export_{name}_xlsx"
    return [export_csv, export_xlsx]


class PointsAdjustmentResource(resources.ModelResource):
    """Point adjustments imported the django-import-export way: one row at a time, each through the single path."""

    email = fields.Field(column_name="email")
    points = fields.Field(column_name="points")
    reason = fields.Field(column_name="reason")

    class Meta:
        model = LedgerEntry
        fields = ("email", "points", "reason")
        force_init_instance = True

    def import_instance(self, instance, row, **kwargs):
        pass  # nothing to copy onto the entry: the ledger service builds it

    def validate_instance(self, instance, import_validation_errors=None, validate_unique=True):
        pass

    def save_instance(self, instance, is_create, row, **kwargs):
        from loyalty.services import points_adjust

        member = Member.objects.get(email=row["email"].strip().lower())
        result = points_adjust(
            member=member,
            points=int(row["points"]),
            reason=row.get("reason") or "CSV import",
            actor=SystemActor("django-import-export"),
            source=EntrySource.IMPORT,
            idempotency_key=f"import-export:{row.get('reference') or kwargs.get('row_number')}",
        )
        if result.entry:
            instance.pk = result.entry.pk
