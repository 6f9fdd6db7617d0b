"""Members: the list support agents search all day; a member's page with Program activity; the two actions."""

import csv
import io
from functools import lru_cache

from django.contrib import admin, messages
from django.core.exceptions import ObjectDoesNotExist
from django.core.paginator import Paginator
from django.db.models.expressions import RawSQL
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, path, reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from imports.resources import ExportPermission, export_actions
from imports.services.errors_file import escape_cell
from tiers.models import TierChange

from ..errors import LoyaltyError
from ..forms import NO, YES, AdjustPointsForm, GiveRewardForm
from ..ids import record_id
from ..models import Coupon, EntryKind, EntrySource, EntryStatus, LedgerEntry, Member, Order
from ..rules import reversal_refusal
from ..selectors_liability import EXPIRING_WINDOWS, expiring_export_rows, expiring_members_sql, member_expiry
from ..services import RELATIVE, SET_TO, points_adjust, reward_give
from ..services.previews import adjust_preview, lifetime_choice, reward_give_preview
from ..services.staff import staff_refusal
from . import jobs
from .action_pages import (
    CappedCountPaginator,
    EffectSection,
    QuickRowsMixin,
    action_page,
    effect_page,
    form_fields_as_hidden,
    is_confirmed,
    mark_token_used,
    new_token,
    report_refusals,
    select_across,
    token_was_used,
    warn_resubmitted,
)
from .conversions import conversion_urls
from .display import day, money, status_text
from .refusals import require_permission
from .tokens import issue_reward_tokens

ACTIVITY_PER_PAGE = 25
PREVIEW_MEMBERS = 100_000  # a "select all" preview runs the dry-run on this many members at most
RELATED_ROWS = 10


def _csv_line(row) -> str:
    """One CSV line, formula cells escaped as the other exports escape them."""
    out = io.StringIO()
    csv.writer(out).writerow([escape_cell(v) if isinstance(v, str) else v for v in row])
    return out.getvalue()


class AccountFilter(admin.SimpleListFilter):
    title = gettext_lazy("account")
    parameter_name = "account"

    def lookups(self, request, model_admin):
        return [("yes", gettext_lazy("With an account")), ("guest", gettext_lazy("Guest"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(signed_up_at__isnull=False)
        if self.value() == "guest":
            return queryset.filter(signed_up_at__isnull=True)
        return queryset


class PendingFilter(admin.SimpleListFilter):
    title = gettext_lazy("pending points")
    parameter_name = "pending"

    def lookups(self, request, model_admin):
        return [("yes", gettext_lazy("Has pending points"))]

    def queryset(self, request, queryset):
        # Served by the partial index member_has_pending.
        if self.value() == "yes":
            return queryset.filter(pending_points__gt=0)
        return queryset


class CustomerGroupFilter(admin.SimpleListFilter):
    """Members of a customer group (a saved filter or a static list), as the groups area defines membership."""

    title = gettext_lazy("customer group")
    parameter_name = "group"

    def lookups(self, request, model_admin):
        from ..models import CustomerGroup

        return [(str(pk), name) for pk, name in CustomerGroup.objects.order_by("name").values_list("pk", "name")]

    def queryset(self, request, queryset):
        from ..models import CustomerGroup
        from ..selectors_groups import group_members

        if not self.value():
            return queryset
        group_id = record_id(self.value())
        group = CustomerGroup.objects.filter(pk=group_id).first() if group_id else None
        if group is None:
            return queryset.none()
        return queryset.filter(pk__in=group_members(group).values("pk"))


class ExpiringFilter(admin.SimpleListFilter):
    """Members whose points expire within 7, 30 or 90 days (the runs' own rule), for reminders."""

    title = gettext_lazy("points expiring")
    parameter_name = "expiring"

    def lookups(self, request, model_admin):
        return [(str(days), _("Within %(days)s days") % {"days": days}) for days in EXPIRING_WINDOWS]

    def queryset(self, request, queryset):
        if self.value() not in {str(days) for days in EXPIRING_WINDOWS}:
            return queryset
        query = expiring_members_sql(int(self.value()))
        if query is None:
            return queryset.none()
        sql, params = query
        return queryset.filter(pk__in=RawSQL(f"SELECT member_id FROM ({sql}) d", params))


@admin.register(Member)
class MemberAdmin(ExportPermission, QuickRowsMixin, admin.ModelAdmin):
    list_display = ["email", "name", "available_points", "pending_points", "lifetime_points", "tier", "signed_up_at"]
    list_select_related = ["tier"]
    list_filter = [
        ("tier", admin.RelatedFieldListFilter),
        AccountFilter,
        PendingFilter,
        ExpiringFilter,
        CustomerGroupFilter,
    ]
    search_fields = ["email", "first_name", "last_name", "customer_id"]
    search_help_text = gettext_lazy("Email, name or store customer id.")
    list_per_page = 50
    list_max_show_all = 0
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    ordering = ["-id"]
    actions = ["adjust_points", "give_reward", issue_reward_tokens, *export_actions("members")]
    # The points and the tier are shown once, above the form, by the page's template (member-figures).
    fields = ["email", "customer_id", "first_name", "last_name", "signed_up_at"]
    change_form_template = "admin/loyalty/member/change_form.html"
    change_list_template = "admin/loyalty/member/change_list.html"

    @admin.display(description=gettext_lazy("name"), ordering="last_name")
    def name(self, member):
        return member.name

    def get_search_results(self, request, queryset, search_term):
        """An email or a customer id goes to its btree index; a name keeps the trigram "contains" search.

        Agents paste a full address or a store's customer id far more often than they type a fragment, and a trigram
        scan of a million emails for "ann@shop.example" costs hundreds of milliseconds where the unique index costs one.
        """
        term = search_term.strip()
        if looks_like_email(term):
            return email_matches(queryset, term.lower()), False
        if term.isdigit() and (by_customer_id := queryset.filter(customer_id=term)).exists():
            return by_customer_id, False
        return super().get_search_results(request, queryset, search_term)

    # Permissions, checked by the actions framework and by the member page's views.

    def has_adjust_points_permission(self, request):
        return request.user.has_perm("loyalty.adjust_points")

    def has_give_reward_permission(self, request):
        return request.user.has_perm("loyalty.give_reward")

    def has_add_permission(self, request):
        return request.user.has_perm("loyalty.add_member")

    def has_delete_permission(self, request, obj=None):
        return False  # a member with a ledger is kept: entries are never deleted

    # A member's page

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:member_id>/adjust-points/", view(self.adjust_points_view), name="loyalty_member_adjust_points"),
            path("<int:member_id>/give-reward/", view(self.give_reward_view), name="loyalty_member_give_reward"),
            path("expiring.csv", view(self.expiring_export_view), name="loyalty_member_expiring_export"),
            *conversion_urls(self),
            *super().get_urls(),
        ]

    def get_object(self, request, object_id, from_field=None):
        # The member's page asks twice (its own context, then Django's change view): one query, kept on the request.
        loaded = request.__dict__.setdefault("_loyalty_members", {})
        if object_id not in loaded:
            queryset = self.get_queryset(request).select_related("tier")
            try:
                loaded[object_id] = queryset.get(pk=int(object_id))
            except (Member.DoesNotExist, ValueError):
                loaded[object_id] = None
        return loaded[object_id]

    def expiring_export_view(self, request):
        """The members whose points expire within 7, 30 or 90 days (`?expiring=`), as CSV for reminder emails."""
        require_permission(request, "loyalty.export_member")
        days = request.GET.get("expiring", "30")
        days = int(days) if days in {str(d) for d in EXPIRING_WINDOWS} else 30
        response = StreamingHttpResponse(
            (_csv_line(row) for row in expiring_export_rows(days)), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="members-expiring-{days}-days.csv"'
        return response

    def changelist_view(self, request, extra_context=None):
        extra = extra_context or {}
        extra["can_export_expiring"] = request.user.has_perm("loyalty.export_member")
        extra["expiring_windows"] = EXPIRING_WINDOWS
        extra["expiring_chosen"] = request.GET.get("expiring", "")
        return super().changelist_view(request, extra_context=extra)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        member = self.get_object(request, object_id)
        extra = extra_context or {}
        if member is not None:
            extra.update(member_page_context(request, member))
            extra["can_adjust"] = self.has_adjust_points_permission(request)
            extra["can_give_reward"] = self.has_give_reward_permission(request)
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def adjust_points_view(self, request, member_id):
        require_permission(request, "loyalty.adjust_points")
        member = get_object_or_404(Member.objects.select_related("tier"), pk=member_id)
        form = AdjustPointsForm(request.POST or None, initial={"action_token": new_token()})
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            data["counts"] = lifetime_choice(data["change_kind"], form.lifetime_answer())
            self._adjust(request, [member], data)
            return HttpResponseRedirect(reverse("admin:loyalty_member_change", args=[member.pk]))
        return self._member_page(request, member, form, _("Adjust points"), adjust_summary(1))

    def give_reward_view(self, request, member_id):
        require_permission(request, "loyalty.give_reward")
        member = get_object_or_404(Member.objects.select_related("tier"), pk=member_id)
        form = GiveRewardForm(request.POST or None, initial={"action_token": new_token(), "deduct_points": YES})
        if request.method == "POST" and form.is_valid():
            self._give(request, [member], form.cleaned_data)
            return HttpResponseRedirect(reverse("admin:loyalty_member_change", args=[member.pk]))
        return self._member_page(request, member, form, _("Give reward"), _("Give a reward to 1 member."))

    def _member_page(self, request, member, form, title, summary):
        response = action_page(
            self,
            request,
            None,
            form=form,
            title=title,
            action="",
            summary=summary,
            rows=member_rows([member]),
            columns=MEMBER_COLUMNS,
            balances_after=True,
        )
        response.context_data["original"] = member
        return response

    # Actions on the list

    @admin.action(description=gettext_lazy("Adjust points"), permissions=["adjust_points"])
    def adjust_points(self, request, queryset):
        """The form, then its effect on the members (the bulk path in dry-run), then one confirming POST."""
        confirmed, previewing = is_confirmed(request), request.POST.get("preview") == "yes"
        editing = request.POST.get("edit") == "yes"  # "Change the form" on the effect page
        form = AdjustPointsForm(
            request.POST if confirmed or previewing or editing else None, initial={"action_token": new_token()}
        )
        if editing or not form.is_valid():
            return self._list_page(request, queryset, form, _("Adjust points"), "adjust_points", step="preview")
        data = form.cleaned_data
        if token_was_used(request, data["action_token"]):
            return warn_resubmitted(self, request)
        data["counts"] = lifetime_choice(data["change_kind"], form.lifetime_answer())
        if not confirmed:
            return self._adjust_effect_page(request, queryset, form, data)
        if select_across(request):
            return self._adjust_in_background(request, data)
        self._adjust(request, queryset.order_by("pk"), data)
        return None

    @admin.action(description=gettext_lazy("Give reward"), permissions=["give_reward"])
    def give_reward(self, request, queryset):
        across, previewing = select_across(request), request.POST.get("preview") == "yes"
        form = GiveRewardForm(
            request.POST if is_confirmed(request) or previewing else None,
            initial={"action_token": new_token(), "deduct_points": YES},
        )
        if not form.is_valid():
            step = "preview" if across else "post"  # "select all": its effect first, then the job
            return self._list_page(request, queryset, form, _("Give reward"), "give_reward", step=step)
        data = form.cleaned_data
        if token_was_used(request, data["action_token"]):
            return warn_resubmitted(self, request)
        if across and not is_confirmed(request):
            return self._give_effect_page(request, queryset, form, data)
        if select_across(request):
            mark_token_used(request, data["action_token"])
            jobs.queue(
                jobs.give_reward_matching,
                user_id=request.user.pk,
                query=request.GET.urlencode(),
                token=data["action_token"],
                reward_id=data["reward"].pk,
                deduct=data["deduct_points"] == YES,
                reason=data["reason"],
            )
            self.message_user(
                request,
                _("Giving %(reward)s to every matching member in the background.") % {"reward": data["reward"].name},
            )
            return None
        self._give(request, queryset.order_by("pk"), data)
        return None

    def _adjust_effect_page(self, request, queryset, form, data):
        """What Adjust points will do to the members picked (or every member matching, for "select all")."""
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[: PREVIEW_MEMBERS + 1])
        token = data["action_token"]
        preview = adjust_preview(
            member_ids=ids[:PREVIEW_MEMBERS],
            points=data["points"],
            apply_type=data["apply_type"],
            reason=data["reason"],
            counts=data["counts"],
            actor=request.user,
            key=lambda member_id: f"admin:{token}:{member_id}",
        )
        lifetime = _("counts toward lifetime and tiers") if data["counts"] else _("does not count toward lifetime")
        what = (
            _("Set available points to %(points)s") % {"points": f"{data['points']:,}"}
            if data["apply_type"] == SET_TO
            else _("Adjust by %(points)s points") % {"points": f"{data['points']:+,}"}
        )
        note = ""
        if len(ids) > PREVIEW_MEMBERS:
            note = _("The effect shown is that on the first %(n)s matching members; the job adjusts them all.") % {
                "n": f"{PREVIEW_MEMBERS:,}"
            }
        hidden = [
            *((k, v) for k, v in form_fields_as_hidden(form) if k != "counts_toward_lifetime"),
            ("counts_toward_lifetime", YES if data["counts"] else NO),
            *(
                (admin.helpers.ACTION_CHECKBOX_NAME, pk)
                for pk in request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME)
            ),
            ("action", "adjust_points"),
        ]
        if select_across(request):
            hidden.append(("select_across", "1"))
        whom = (
            _("every member matching the list's filter and search")
            if select_across(request)
            else ngettext("%(n)d member picked", "%(n)d members picked", len(ids)) % {"n": len(ids)}
        )
        return effect_page(
            self,
            request,
            title=_("Adjust points: the effect"),
            summary=f"{what}, {whom} ({lifetime}). " + _("Nothing is posted until you confirm."),
            note=note,
            sections=[EffectSection(preview)],
            hidden=hidden,
            confirm_label=_("Confirm: adjust points"),
            can_edit=True,
            back_url=request.get_full_path(),  # the members list as it was (its filter and search)
        )

    def _give_effect_page(self, request, queryset, form, data):
        """What Give reward will do to every matching member, before the background job is queued."""
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:PREVIEW_MEMBERS])
        reward, deduct = data["reward"], data["deduct_points"] == YES
        preview = reward_give_preview(member_ids=ids, reward=reward, deduct=deduct, actor=request.user)
        summary = (
            _("Give %(reward)s to every matching member (%(n)s), each paying %(cost)s points.")
            if deduct
            else _("Give %(reward)s to every matching member (%(n)s), for free: no points move.")
        ) % {"reward": reward.name, "n": f"{len(ids):,}", "cost": f"{reward.points_cost:,}"}
        hidden = [*form_fields_as_hidden(form), ("action", "give_reward"), ("select_across", "1")]
        hidden += [
            (admin.helpers.ACTION_CHECKBOX_NAME, pk) for pk in request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME)
        ]
        return effect_page(
            self,
            request,
            title=_("Give reward: the effect"),
            summary=summary + " " + _("Nothing is given until you confirm."),
            sections=[EffectSection(preview)] if deduct else [],
            hidden=hidden,
            confirm_label=_("Confirm: give the reward"),
            back_url=request.get_full_path(),
        )

    def _list_page(self, request, queryset, form, title, action, step="post"):
        if select_across(request):
            summary = _("%(title)s: every member matching the list's filter and search, in the background.") % {
                "title": title
            }
        else:
            count = len(request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME))
            summary = ngettext("%(title)s: %(count)d member.", "%(title)s: %(count)d members.", count) % {
                "title": title,
                "count": count,
            }
        return action_page(
            self,
            request,
            queryset,
            form=form,
            title=title,
            action=action,
            summary=summary,
            rows=member_rows(queryset.select_related("tier")[:20]),
            columns=MEMBER_COLUMNS,
            balances_after=True,
            step=step,
            submit_label=_("Preview the effect") if step == "preview" else "",
        )

    def _adjust(self, request, members, data):
        token = data["action_token"]
        done, total, already, refusals = 0, 0, 0, []
        for member in members:
            try:
                result = points_adjust(
                    member=member.pk,
                    points=data["points"],
                    apply_type=data["apply_type"],
                    reason=data["reason"],
                    actor=request.user,
                    idempotency_key=f"admin:{token}:{member.pk}",
                    counts_toward_lifetime=data.get("counts", True),
                )
            except LoyaltyError as error:
                refusals.append(f"{member.email}: {error.message}")
                continue
            if result.already_applied:
                already += 1
            elif result.entry is not None:
                done += 1
                total += result.entry.points
        mark_token_used(request, token)
        if done or not (already or refusals):
            self.message_user(request, adjusted_message(done, total, data["apply_type"], data["points"]))
        if already:
            self.message_user(request, already_message(already), messages.WARNING)
        report_refusals(self, request, refusals)

    def _adjust_in_background(self, request, data):
        # A relative change is the same for every member: the staff policy can answer before the job is queued.
        if data["apply_type"] == RELATIVE and (refusal := staff_refusal(request.user, "adjust", data["points"])):
            self.message_user(request, refusal, messages.ERROR)
            return None
        mark_token_used(request, data["action_token"])
        jobs.queue(
            jobs.adjust_points_matching,
            user_id=request.user.pk,
            query=request.GET.urlencode(),
            token=data["action_token"],
            points=data["points"],
            apply_type=data["apply_type"],
            reason=data["reason"],
            counts=data["counts"],
        )
        self.message_user(
            request,
            _("Adjusting the points of every matching member in the background; their activity will show it."),
        )
        return None

    def _give(self, request, members, data):
        token, reward = data["action_token"], data["reward"]
        given, spent, refusals = 0, 0, []
        for member in members:
            key = f"admin:{token}:{member.pk}"
            if Coupon.objects.filter(idempotency_key=key).exists():
                continue
            try:
                coupon = reward_give(
                    member=member.pk,
                    reward=reward,
                    deduct_points=data["deduct_points"] == YES,
                    actor=request.user,
                    reason=data["reason"],
                    idempotency_key=key,
                )
            except LoyaltyError as error:
                refusals.append(f"{member.email}: {error.message}")
                continue
            given += 1
            spent += coupon.points_spent
        mark_token_used(request, token)
        if given or not refusals:
            self.message_user(request, given_message(given, reward.name, spent, data["deduct_points"] == NO))
        report_refusals(self, request, refusals)


def looks_like_email(term: str) -> bool:
    """A single word with an "@" after its first character; "@shop.example" alone stays a "contains" search."""
    return "@" in term[1:] and not any(c.isspace() for c in term)


def email_matches(queryset, email: str):
    """The member with exactly this address, else the members whose address starts with it.

    Emails are stored lower-cased (a CHECK says so), so both lookups are plain btree ones: "=" on the unique index and
    LIKE 'term%' on its varchar_pattern_ops twin.
    """
    exact = queryset.filter(email=email)
    if exact.exists():
        return exact
    return queryset.filter(email__startswith=email)


MEMBER_COLUMNS = [
    gettext_lazy("Email"),
    gettext_lazy("Name"),
    gettext_lazy("Available"),
    gettext_lazy("Pending"),
    gettext_lazy("Lifetime"),
    gettext_lazy("Tier"),
    gettext_lazy("Available after"),
]


def member_rows(members):
    """The members an action page is about; the last column is filled in by the page as the form is filled in."""
    return [
        [m.email, m.name, m.available_points, m.pending_points, m.lifetime_points, m.tier.name if m.tier else "-", ""]
        for m in members
    ]


def adjust_summary(count):
    return ngettext("Adjust the points of %(count)d member.", "Adjust the points of %(count)d members.", count) % {
        "count": count
    }


def adjusted_message(count, total, apply_type, points):
    if apply_type == SET_TO:
        return ngettext(
            "Set %(count)d member to %(points)s points (change %(total)+d).",
            "Set %(count)d members to %(points)s points (change %(total)+d).",
            count,
        ) % {"count": count, "points": f"{points:,}", "total": total}
    return ngettext(
        "Adjusted %(count)d member: %(points)+d.",
        "Adjusted %(count)d members: %(points)+d each.",
        count,
    ) % {"count": count, "points": points}


def already_message(count):
    return ngettext(
        "%(count)d member already had this adjustment (the form was sent twice); nothing posted again.",
        "%(count)d members already had this adjustment (the form was sent twice); nothing posted again.",
        count,
    ) % {"count": count}


def given_message(count, reward, spent, free):
    if free:
        return ngettext(
            "Gave %(reward)s to %(count)d member, for free.",
            "Gave %(reward)s to %(count)d members, for free.",
            count,
        ) % {"count": count, "reward": reward}
    return ngettext(
        "Gave %(reward)s to %(count)d member (%(spent)s points deducted).",
        "Gave %(reward)s to %(count)d members (%(spent)s points deducted).",
        count,
    ) % {"count": count, "reward": reward, "spent": f"{spent:,}"}


# ---------------------------------------------------------------------------------------------------------------
# A member's page: Program activity, coupons, orders, tier history (a fixed number of queries, however long the history)

SOURCE_PAGES = {
    EntrySource.IMPORT: ("admin:imports_importjob_change", gettext_lazy("Import #%(id)s")),
    EntrySource.BACKFILL: ("admin:imports_backfillrun_change", gettext_lazy("Reward past actions #%(id)s")),
    EntrySource.ORDER: ("admin:loyalty_order_change", gettext_lazy("Order #%(id)s")),
}


def admin_url(name, *args, query="") -> str:
    """An admin page's URL, or "" where that page is not registered (another area may not have shipped it yet)."""
    try:
        url = reverse(name, args=args)
    except NoReverseMatch:
        return ""
    return f"{url}?{query}" if query else url


def change_url(name, pk) -> str:
    """An admin change page's URL, reversed once per page name: lists call this once per row."""
    pattern = _change_url_pattern(name, get_urlconf(), get_script_prefix())
    return pattern.replace(PK_PLACEHOLDER, str(pk), 1) if pattern else ""


PK_PLACEHOLDER = "__pk__"


@lru_cache
def _change_url_pattern(name, urlconf, prefix) -> str:
    return admin_url(name, PK_PLACEHOLDER)


def source_link(entry) -> tuple[str, str]:
    """The label and admin URL of where an entry came from ("" where there is no page to link)."""
    if entry.source not in SOURCE_PAGES or entry.source_ref is None:
        return entry.get_source_display(), ""
    url_name, label = SOURCE_PAGES[entry.source]
    label = getattr(entry, "source_label", None) or label % {"id": entry.source_ref}
    return label, change_url(url_name, entry.source_ref)


def label_order_sources(entries) -> None:
    """Name each order an entry came from as the store does ("Shopify #1001"), with one query for the page's rows;
    the order's row number alone ("Order #17") reads like an order number it is not."""
    entries = [e for e in entries if e.source == EntrySource.ORDER and e.source_ref is not None]
    orders = Order.objects.in_bulk({e.source_ref for e in entries})
    for entry in entries:
        if order := orders.get(entry.source_ref):
            entry.source_label = str(order)


def reversed_label(entry) -> str:
    """Read from the select_related join: a missing reverse one-to-one raises without a query."""
    try:
        return _("Reversed by #%(id)s") % {"id": entry.reversed_by.pk}
    except ObjectDoesNotExist:
        pass
    try:
        entry.reversal_shortfall  # noqa: B018
    except ObjectDoesNotExist:
        return ""
    return _("Reversed (nothing could be taken)")


def _linked(entry, name) -> int | None:
    """The id of a one-to-one row read from the select_related join (None where there is none), without a query."""
    try:
        return getattr(entry, name).pk
    except ObjectDoesNotExist:
        return None


def entry_links(request, entry, back: str) -> list[tuple[str, str]]:
    """Reverse (and Approve / Reject when pending) for one entry of the activity, as the staff member may use them.

    Each opens the ledger entries action's own intermediate page for this entry; whether the entry can be reversed at
    all is the ledger service's rule (reversal_refusal).
    """
    links = []
    query = urlencode({"entry": entry.pk, "next": back})
    reversible = not reversal_refusal(
        entry_id=entry.pk,
        kind=entry.kind,
        status=entry.status,
        reversed_by=_linked(entry, "reversed_by"),
        reversed_without_entry=_linked(entry, "reversal_shortfall") is not None,
        remaining=None,  # what partial reverts left is the Reverse page's to show
    )
    if reversible and request.user.has_perm("loyalty.reverse_entry"):
        links.append((_("Reverse"), f"{_action_url('reverse_conversion')}?{query}"))
    if entry.status == EntryStatus.PENDING and request.user.has_perm("loyalty.approve_pending"):
        links.append((_("Approve"), f"{_action_url('approve_pending')}?{query}"))
        links.append((_("Reject"), f"{_action_url('reject_pending')}?{query}"))
    return links


def _action_url(action: str) -> str:
    return reverse("admin:loyalty_ledgerentry_act", args=[action])


def activity_rows(request, entries, back: str):
    label_order_sources(entries)
    rows = []
    for entry in entries:
        label, url = source_link(entry)
        rows.append(
            {
                "entry": entry,
                "status": status_text(entry),
                "source_label": label,
                "source_url": url,
                "reversed": reversed_label(entry),
                "links": entry_links(request, entry, back),
                "lifetime_note": lifetime_note(entry),
            }
        )
    return rows


def lifetime_note(entry) -> str:
    """A staff adjustment's answer to "counts toward lifetime?", as the entry records it (other kinds follow their
    kind, README "Tier-safe corrections")."""
    if entry.kind not in (EntryKind.ADJUSTMENT, EntryKind.REVERSAL):
        return ""
    if entry.counts_toward_lifetime:
        return _("Counts toward lifetime") if entry.kind == EntryKind.ADJUSTMENT else ""
    return _("Not toward lifetime: the tier stays")


def coupon_status(coupon) -> str:
    if coupon.disabled:
        if coupon.disabled_at:
            return _("Disabled on %(date)s") % {"date": day(coupon.disabled_at)}
        return _("Disabled")
    return _("Active")


def member_page_context(request, member) -> dict:
    entries = (
        LedgerEntry.objects.filter(member=member)
        .select_related("actor_user", "reversed_by", "reversal_shortfall")
        .order_by("-created_at", "-id")
    )
    page = Paginator(entries, ACTIVITY_PER_PAGE).get_page(request.GET.get("activity_page"))
    coupons = member.coupons.select_related("reward").order_by("-created_at", "-id")[:RELATED_ROWS]
    return {
        "expiry": member_expiry(member),
        "activity_page": page,
        "activity": activity_rows(request, page.object_list, request.get_full_path()),
        "coupons": [(coupon, coupon_status(coupon)) for coupon in coupons],
        "orders": [
            (order, change_url("admin:loyalty_order_change", order.pk), money(order.total, order.currency))
            for order in Order.objects.filter(member=member).order_by("-placed_at", "-id")[:RELATED_ROWS]
        ],
        "coupons_url": admin_url("admin:loyalty_coupon_changelist", query=f"member__id__exact={member.pk}"),
        "reward_tokens": list(member.reward_tokens.order_by("-created_at", "-id")[:RELATED_ROWS]),
        "tier_changes": list(
            TierChange.objects.filter(member=member)
            .select_related("from_tier", "to_tier")
            .order_by("-created_at", "-id")[:RELATED_ROWS]
        ),
    }
