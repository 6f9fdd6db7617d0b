from django.contrib import admin

from ..models import LedgerEntry


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "member", "points", "kind", "status", "reason", "source"]
    list_select_related = ["member"]
