"""Orders mirrored from the store: what each earned and what was taken back.

Orders are the store's record, so their fields are read-only here; "Settle points" re-applies today's rules to the
selected orders (credit what is due, revert what must go), which is safe to run again.
"""

from django.contrib import admin, messages
from django.db.models import IntegerField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy, ngettext

from ..models import EntryKind, EntrySource, EntryStatus, LedgerEntry, Order, OrderRefund, ProgramSettings
from ..services.orders import earn_refusal, full_revert_reason, order_points
from ..tasks.orders import order_settle_task


def _points_sum(**filters):
    entries = (
        LedgerEntry.objects.filter(source=EntrySource.ORDER, source_ref=OuterRef("pk"), **filters)
        .order_by()
        .values("source_ref")
        .annotate(total=Sum("points"))
        .values("total")
    )
    return Coalesce(Subquery(entries, output_field=IntegerField()), 0)


class RefundInline(admin.TabularInline):
    model = OrderRefund
    fields = ["store_refund_id", "amount", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "member",
        "total",
        "earnable_amount",
        "currency",
        "financial_status",
        "cancelled",
        "points_earned",
        "points_taken_back",
        "placed_at",
    ]
    list_filter = ["store", "financial_status", "cancelled", "test"]
    list_select_related = ["member"]
    search_fields = ["=store_order_id", "=order_number", "=email"]
    search_help_text = gettext_lazy("The store's order id or number, or the customer's email (exact).")
    show_full_result_count = False
    inlines = [RefundInline]
    actions = ["settle_points"]
    change_form_template = "admin/loyalty/order/change_form.html"

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                earned_points=_points_sum(kind=EntryKind.EARN),
                taken_back_points=_points_sum(
                    kind=EntryKind.REVERSAL, status__in=[EntryStatus.ACTIVE, EntryStatus.PENDING]
                ),
                rejected_points=_points_sum(kind=EntryKind.EARN, status=EntryStatus.REJECTED),
            )
        )

    @admin.display(description=gettext_lazy("earned"), ordering="earned_points")
    def points_earned(self, obj):
        return obj.earned_points

    @admin.display(description=gettext_lazy("taken back"))
    def points_taken_back(self, obj):
        return obj.rejected_points - obj.taken_back_points

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False  # orders come from the store (webhooks) or a CSV import

    def has_delete_permission(self, request, obj=None):
        return False  # the ledger's entries point at them

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        order = self.get_object(request, object_id)
        if order is not None:
            program = ProgramSettings.load()
            extra_context["order_points"] = order_points(order)
            extra_context["earn_refusal"] = earn_refusal(order, program)
            extra_context["full_revert_reason"] = full_revert_reason(order, program)
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description=gettext_lazy("Settle points with today's rules"), permissions=["change"])
    def settle_points(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True)[:1000])
        for order_id in ids:
            order_settle_task.delay(order_id)
        self.message_user(
            request,
            ngettext(
                "Queued %(count)d order to settle its points.",
                "Queued %(count)d orders to settle their points.",
                len(ids),
            )
            % {"count": len(ids)},
            messages.SUCCESS,
        )
