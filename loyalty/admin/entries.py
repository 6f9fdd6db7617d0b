"""Ledger entries: the list with its filters, and Reverse conversion, Approve pending, Reject pending.

Entries are read-only here: the ledger is append-only, and every change goes through the ledger service.
"""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.urls import path
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from imports.resources import ExportPermission, export_actions

from ..errors import LoyaltyError
from ..forms import ApproveForm, EntryReasonForm
from ..ids import record_id
from ..models import EntryKind, EntryStatus, LedgerEntry
from ..services import entry_approve, entry_reject, entry_reverse
from ..services.entry_previews import entries_preview
from ..tasks.admin_actions import entries_action_preview
from . import jobs
from .action_pages import (
    PREVIEW_ROWS,
    CappedCountPaginator,
    EffectSection,
    PreviewRow,
    QuickRowsMixin,
    action_page,
    choice_label,
    is_confirmed,
    mark_token_used,
    new_token,
    report_refusals,
    select_across,
    titled,
    token_was_used,
    warn_resubmitted,
)
from .display import status_text
from .members import change_url, label_order_sources, source_link
from .refusals import MissingPermission

# Picked rows are posted one by one, in the request; "select all N" goes to a background job instead.
MAX_ENTRIES_PER_ACTION = 1000


# The actions a member's Program activity links to, each with the permission it needs.
ENTRY_ACTIONS = {
    "reverse_conversion": "loyalty.reverse_entry",
    "approve_pending": "loyalty.approve_pending",
    "reject_pending": "loyalty.approve_pending",
}


class ActorFilter(admin.SimpleListFilter):
    """Who did it: a staff user, or the system (imports, runs, jobs)."""

    title = gettext_lazy("staff member")
    parameter_name = "by"

    def lookups(self, request, model_admin):
        staff = get_user_model().objects.filter(is_staff=True).order_by("username").values_list("pk", "username")
        return [("system", gettext_lazy("The system")), *((str(pk), name) for pk, name in staff)]

    def queryset(self, request, queryset):
        if self.value() == "system":
            return queryset.filter(actor_user__isnull=True)
        if self.value() and (user_id := record_id(self.value())):
            return queryset.filter(actor_user_id=user_id)
        return queryset


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ExportPermission, QuickRowsMixin, admin.ModelAdmin):
    list_display = ["id", "created_at", "member", "points", "kind_label", "status_label", "reason", "by", "source_page"]
    list_display_links = ["id"]
    list_select_related = ["member", "actor_user"]
    list_filter = [
        "kind",
        "status",
        "source",
        ("created_at", titled(admin.DateFieldListFilter, gettext_lazy("date"))),
        ActorFilter,
    ]
    search_fields = ["=member__email", "=id"]
    search_help_text = gettext_lazy("A member's exact email, or an entry number.")
    list_per_page = 50
    list_max_show_all = 0
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    raw_id_fields = ["member"]
    actions = ["reverse_conversion", "approve_pending", "reject_pending", *export_actions("entries")]

    def row_label(self, entry):
        return f"#{entry.pk}"  # the checkbox's label: the entry's number says which row it is

    @admin.display(description=gettext_lazy("kind"), ordering="kind")
    def kind_label(self, entry):
        return choice_label(EntryKind, entry.kind)

    @admin.display(description=gettext_lazy("status"), ordering="status")
    def status_label(self, entry):
        if entry.status == EntryStatus.PENDING:
            return status_text(entry)  # "Pending: available on <date>"
        return choice_label(EntryStatus, entry.status)

    @admin.display(description=gettext_lazy("by"))
    def by(self, entry):
        return entry.actor_label

    @admin.display(description=gettext_lazy("source"))
    def source_page(self, entry):
        label, url = source_link(entry)
        return format_html('<a href="{}">{}</a>', url, label) if url else label

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        label_order_sources(changelist.result_list)  # one query for the page's orders
        return changelist

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("act/<str:action>/", view(self.entry_action_view), name="loyalty_ledgerentry_act"),
            *super().get_urls(),
        ]

    def entry_action_view(self, request, action):
        """Reverse, Approve or Reject from a member's Program activity: the list action's own page and form.

        GET ?entry=<id>&next=<the member's page> shows the action's intermediate page for that entry; its form posts
        back here, the action runs as from the list, and the staff member returns to `next`.
        """
        if not self.has_view_permission(request):
            raise PermissionDenied  # who may not see the ledger learns nothing of it, not even which actions exist
        if action not in ENTRY_ACTIONS:
            raise Http404(_("No such action."))
        if not request.user.has_perm(ENTRY_ACTIONS[action]):
            raise MissingPermission(ENTRY_ACTIONS[action])
        ids = [i for v in request.GET.getlist("entry") if (i := record_id(v))]
        queryset = self.get_queryset(request).filter(pk__in=ids)
        if not ids or not queryset.exists():
            raise Http404(_("No such ledger entry."))
        response = getattr(self, action)(request, queryset)
        if response is not None:
            return response
        return HttpResponseRedirect(self._back(request, queryset))

    @staticmethod
    def _back(request, queryset):
        """Where the staff member came from (a member's page), else that member's page."""
        target = request.GET.get("next", "")
        if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=False):
            return target
        return change_url("admin:loyalty_member_change", queryset.values_list("member_id", flat=True).first())

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_reverse_entry_permission(self, request):
        return request.user.has_perm("loyalty.reverse_entry")

    def has_approve_pending_permission(self, request):
        return request.user.has_perm("loyalty.approve_pending")

    @admin.action(description=gettext_lazy("Reverse conversion"), permissions=["reverse_entry"])
    def reverse_conversion(self, request, queryset):
        return self._run(
            request,
            queryset,
            EntryReasonForm,
            _("Reverse conversion"),
            "reverse_conversion",
            self._reverse_one,
            _("A pending entry is rejected; an active one gets a reversal entry. Spent points cannot be taken back."),
        )

    @admin.action(description=gettext_lazy("Approve pending points"), permissions=["approve_pending"])
    def approve_pending(self, request, queryset):
        return self._run(
            request,
            queryset,
            ApproveForm,
            _("Approve pending points"),
            "approve_pending",
            self._approve_one,
            _("The points become available now and count toward lifetime."),
        )

    @admin.action(description=gettext_lazy("Reject pending points"), permissions=["approve_pending"])
    def reject_pending(self, request, queryset):
        return self._run(
            request,
            queryset,
            EntryReasonForm,
            _("Reject pending points"),
            "reject_pending",
            self._reject_one,
            _("The points never become available."),
        )

    def _run(self, request, queryset, form_class, title, action, post_one, note):
        form = form_class(request.POST if is_confirmed(request) else None, initial={"action_token": new_token()})
        across = select_across(request)
        entries = self._chosen(queryset, across)
        if entries is None:
            self.message_user(
                request,
                _("Pick at most %(max)d entries at a time; narrow the list with its filters.")
                % {"max": MAX_ENTRIES_PER_ACTION},
                messages.ERROR,
            )
            return None
        if not form.is_valid():
            outcomes = entries_preview(entries, action, actor=request.user)
            summary = across_summary(title) if across else picked_summary(title, outcomes)
            # "Select all": the background job's own bulk call in dry-run gives the effect on every matching entry.
            sections = (
                [EffectSection(entries_action_preview(queryset=queryset, user=request.user, action=action))]
                if across
                else []
            )
            return action_page(
                self,
                request,
                queryset,
                form=form,
                title=title,
                action=action,
                summary=summary,
                note=note,
                rows=entry_rows(outcomes[:PREVIEW_ROWS]),
                columns=ENTRY_COLUMNS,
                sections=sections,
            )
        token = form.cleaned_data["action_token"]
        if token_was_used(request, token):
            return warn_resubmitted(self, request)
        if across:
            return self._run_in_background(request, action, form.cleaned_data)
        self._post_each(request, entries, action, post_one, form.cleaned_data)
        return None

    @staticmethod
    def _chosen(queryset, across):
        """The picked entries (None past the cap), or, for "select all", the first of them for the preview."""
        if across:
            return list(queryset.select_related("member")[:PREVIEW_ROWS])
        entries = list(queryset.select_related("member").order_by("pk")[: MAX_ENTRIES_PER_ACTION + 1])
        return None if len(entries) > MAX_ENTRIES_PER_ACTION else entries

    def _post_each(self, request, entries, action, post_one, data):
        done, points, refusals = 0, 0, []
        for entry in entries:
            try:
                points += post_one(request, entry, data)
                done += 1
            except LoyaltyError as error:
                refusals.append(f"#{entry.pk} ({entry.member.email}): {error.message}")
        mark_token_used(request, data["action_token"])
        if done or not refusals:
            self.message_user(request, done_message(action, done, points))
        report_refusals(self, request, refusals)

    def _run_in_background(self, request, action, data):
        mark_token_used(request, data["action_token"])
        jobs.queue(
            jobs.entries_action_matching,
            user_id=request.user.pk,
            query=request.GET.urlencode(),
            action=action,
            reason=data.get("reason") or "",
        )
        self.message_user(request, QUEUED_MESSAGES[action])
        return None

    @staticmethod
    def _reverse_one(request, entry, data):
        result = entry_reverse(
            entry=entry.pk,
            reason=data["reason"],
            actor=request.user,
            idempotency_key=f"admin:{data['action_token']}:{entry.pk}",
        )
        if result.already_applied:
            raise LoyaltyError(_("already reversed by this form."))
        return result.entry.points if result.entry is not None and result.entry.pk != entry.pk else -entry.points

    @staticmethod
    def _approve_one(request, entry, data):
        entry_approve(entry=entry.pk, actor=request.user, reason=data.get("reason") or "")
        return entry.points

    @staticmethod
    def _reject_one(request, entry, data):
        entry_reject(entry=entry.pk, actor=request.user, reason=data["reason"])
        return entry.points


ENTRY_COLUMNS = [
    gettext_lazy("Entry"),
    gettext_lazy("Member"),
    gettext_lazy("Kind"),
    gettext_lazy("Status"),
    gettext_lazy("Points"),
    gettext_lazy("Reason"),
    gettext_lazy("Available before"),
    gettext_lazy("Available after"),
    gettext_lazy("What happens"),
]


def entry_rows(outcomes):
    """The preview's rows: one member's rows follow one another, each starting from the balance the last one left."""
    return [
        PreviewRow(
            [
                f"#{o.entry.pk}",
                o.entry.member.email,
                o.entry.get_kind_display(),
                status_text(o.entry),
                f"{o.entry.points:+,}",
                o.entry.reason,
                f"{o.available_before:,}",
                f"{o.available_after:,}",
                o.outcome,
            ],
            css="refused" if o.refused else "",
        )
        for o in outcomes
    ]


QUEUED_MESSAGES = {
    "reverse_conversion": gettext_lazy(
        "Queued: every matching entry will be reversed in the background; the members' activity will show it."
    ),
    "approve_pending": gettext_lazy(
        "Queued: the pending points of every matching entry will be approved in the background."
    ),
    "reject_pending": gettext_lazy(
        "Queued: the pending points of every matching entry will be rejected in the background."
    ),
}


def across_summary(title) -> str:
    return _("%(title)s: every entry matching the list's filter and search, in the background.") % {"title": title}


def picked_summary(title, outcomes) -> str:
    count = len(outcomes)
    summary = ngettext("%(title)s: %(count)d entry.", "%(title)s: %(count)d entries.", count) % {
        "title": title,
        "count": count,
    }
    if refused := sum(o.refused for o in outcomes):
        summary += " " + ngettext(
            "%(count)d will be refused (marked below); the others go through.",
            "%(count)d will be refused (marked below); the others go through.",
            refused,
        ) % {"count": refused}
    return summary


def done_message(action, count, points):
    if action == "reverse_conversion":
        return ngettext(
            "Reversed %(count)d entry (%(points)s points).",
            "Reversed %(count)d entries (%(points)s points).",
            count,
        ) % {"count": count, "points": f"{points:+,}"}
    if action == "approve_pending":
        return ngettext(
            "Approved %(count)d pending entry: %(points)s points now available.",
            "Approved %(count)d pending entries: %(points)s points now available.",
            count,
        ) % {"count": count, "points": f"{points:,}"}
    return ngettext(
        "Rejected %(count)d pending entry (%(points)s points).",
        "Rejected %(count)d pending entries (%(points)s points).",
        count,
    ) % {"count": count, "points": f"{points:,}"}
