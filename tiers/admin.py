from django.contrib import admin
from django.utils.translation import gettext_lazy

from loyalty.admin.action_pages import titled

from .models import Tier, TierChange


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    list_display = ["name", "threshold"]
    ordering = ["threshold"]


@admin.register(TierChange)
class TierChangeAdmin(admin.ModelAdmin):
    """Tier history is written with the ledger, in the same transaction: read-only here."""

    list_display = ["created_at", "member", "from_tier", "to_tier", "lifetime_points", "reason"]
    list_select_related = ["member", "from_tier", "to_tier"]
    list_filter = [("to_tier", titled(admin.RelatedFieldListFilter, gettext_lazy("new tier")))]
    search_fields = ["=member__email"]
    raw_id_fields = ["member", "entry"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
