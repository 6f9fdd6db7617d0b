"""The store's deliveries as they arrived: what they were, what became of them, and a way to retry failed ones."""

import json

from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.translation import gettext_lazy, ngettext

from .models import WebhookEvent
from .services import events_retry


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ["__str__", "topic", "order_ref", "status", "short_error", "attempts", "received_at", "processed_at"]
    list_filter = ["status", "store", "topic"]
    search_fields = ["=order_ref", "=delivery_id"]
    search_help_text = gettext_lazy("The store's order id, or the delivery id (exact).")
    show_full_result_count = False
    actions = ["retry_events"]
    fields = [
        "store",
        "topic",
        "status",
        "result",
        "error",
        "attempts",
        "received_at",
        "processed_at",
        "order_ref",
        "delivery_id",
        "headers",
        "pretty_body",
    ]

    @admin.display(description=gettext_lazy("error"))
    def short_error(self, obj):
        return obj.error[:120]

    @admin.display(description=gettext_lazy("body"))
    def pretty_body(self, obj):
        """The body indented when it is JSON Python can read back; else as it was stored (a body nested 100,000
        deep, say, which json refuses with RecursionError)."""
        try:
            text = json.dumps(json.loads(obj.body), indent=2)
        except (ValueError, RecursionError, TypeError):
            text = obj.body
        return format_html('<pre style="max-height: 40em; overflow: auto">{}</pre>', text)

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request):
        return False  # deliveries come from the store

    def has_delete_permission(self, request, obj=None):
        return False  # kept as the record of what the store said

    def has_retry_permission(self, request):
        return request.user.has_perm("webhooks.retry_webhookevent")

    @admin.action(description=gettext_lazy("Retry the selected events"), permissions=["retry"])
    def retry_events(self, request, queryset):
        count = events_retry(event_ids=queryset.values_list("pk", flat=True)[:1000])
        skipped = queryset.count() - count
        self.message_user(
            request,
            ngettext("Queued %(count)d event again.", "Queued %(count)d events again.", count) % {"count": count},
            messages.SUCCESS,
        )
        if skipped > 0:
            self.message_user(
                request,
                ngettext(
                    "%(count)d event was left alone: it was already processed or ignored.",
                    "%(count)d events were left alone: they were already processed or ignored.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )
