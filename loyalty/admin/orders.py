"""Orders mirrored from the store: what each earned, what was taken back and what could not be (shortfalls).

Orders are the store's record, so their fields are read-only here; "Settle points" re-applies today's rules to the
selected orders (credit what is due, revert what must go), which is safe to run again. Shortfalls (points an automatic
revert could not take back because the member had spent them) are listed with the order they belong to.
"""

from decimal import Decimal

from django.contrib import admin, messages
from django.db.models import IntegerField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy, ngettext

from ..models import EntryKind, EntrySource, EntryStatus, LedgerEntry, Order, OrderRefund, ProgramSettings, Shortfall
from ..services.orders import (
    earn_refusal,
    earnable_amount,
    full_revert_reason,
    order_points,
    orders_not_recovered,
    refund_earnable_amount,
    shortfall_orders,
)
from ..tasks.orders import order_settle_task
from .action_pages import CappedCountPaginator


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
    fields = ["store_refund_id", "amount", "goods_amount", "tax_amount", "shipping_amount", "shipping_tax_amount"]
    fields += ["created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


def _cents(amount) -> Decimal:
    return (Decimal(amount.numerator) / Decimal(amount.denominator)).quantize(Decimal("0.01"))


def _earns_on(program: ProgramSettings) -> str:
    parts = [str(gettext_lazy("goods after discounts"))]
    if program.earn_on_tax:
        parts.append(str(gettext_lazy("tax")))
    if program.earn_on_shipping:
        parts.append(str(gettext_lazy("shipping")))
    return ", ".join(parts)


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
        "points_not_recovered",
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

    @admin.display(description=gettext_lazy("not recovered"))
    def points_not_recovered(self, obj):
        """Shortfalls of the order's earnings (set on the page's rows by get_changelist_instance)."""
        return getattr(obj, "not_recovered_points", "")

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        not_recovered = orders_not_recovered(changelist.result_list)
        for order in changelist.result_list:
            order.not_recovered_points = not_recovered.get(order.pk, 0)
        return changelist

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
            extra_context["earnable"] = earnable_amount(order, program)
            extra_context["earns_on"] = _earns_on(program)
            extra_context["refunds_earnable"] = [
                (refund, _cents(refund_earnable_amount(refund, order, program, extra_context["earnable"])))
                for refund in order.refunds.order_by("created_at", "pk")
            ]
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


@admin.register(Shortfall)
class ShortfallAdmin(admin.ModelAdmin):
    """Points automatic reverts (and capped debits) could not take back because the member had already spent them,
    each with the order whose earning it belongs to. Never more, per earning, than the earning still owed."""

    list_display = ["created_at", "member", "points", "order_link", "earning_link", "reason"]
    list_select_related = ["member", "entry"]
    search_fields = ["=member__email"]
    search_help_text = gettext_lazy("The member's email (exact).")
    show_full_result_count = False
    paginator = CappedCountPaginator
    date_hierarchy = None

    @admin.display(description=gettext_lazy("order"))
    def order_link(self, obj):
        order_id = getattr(obj, "order_id_found", None)
        if not order_id:
            return "-"
        return format_html('<a href="{}">#{}</a>', reverse("admin:loyalty_order_change", args=[order_id]), order_id)

    @admin.display(description=gettext_lazy("earning"))
    def earning_link(self, obj):
        if not obj.entry_id:
            return "-"
        url = reverse("admin:loyalty_ledgerentry_change", args=[obj.entry_id])
        return format_html('<a href="{}">{}</a>', url, obj.entry)

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        orders = shortfall_orders(changelist.result_list)
        for shortfall in changelist.result_list:
            shortfall.order_id_found = orders.get(shortfall.pk)
        return changelist

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False  # recorded by the ledger service only

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
