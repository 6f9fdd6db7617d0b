"""What the admin's actions share: the intermediate page, the one-time token, the capped paginator, the messages."""

import secrets
from functools import lru_cache

from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.translation import get_language
from django.utils.translation import gettext as _

ACTION_TEMPLATE = "admin/loyalty/action_confirm.html"
PREVIEW_ROWS = 20
USED_TOKENS = "loyalty_admin_used_action_tokens"
REFUSALS_SHOWN = 10


class CappedCountPaginator(Paginator):
    """Counts at most `cap` + 1 rows: a big list never pays a COUNT(*) of the whole table on every page.

    Past the cap the list offers the first pages only; a search or a filter narrows it down.
    """

    cap = 1_000

    @cached_property
    def count(self):
        return self.object_list[: self.cap + 1].count()


class QuickChangeList(ChangeList):
    """The admin's change list with the per-row URL work done once per page.

    Django reverses the change URL and re-resolves it to merge the list's filters into it, for every row; on a
    50-row page that is a hundred trips through the URL resolver. Here the URL is reversed once with a placeholder,
    and the filters are appended as they are, which gives the same link.
    """

    PLACEHOLDER = "__row_pk__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.row_filters, self.preserved_filters = self.preserved_filters, ""

    @cached_property
    def row_url(self) -> str:
        name = f"admin:{self.opts.app_label}_{self.opts.model_name}_change"
        url = reverse(name, args=[self.PLACEHOLDER], current_app=self.model_admin.admin_site.name)
        return f"{url}?{self.row_filters}" if self.row_filters else url

    def url_for_result(self, result):
        return self.row_url.replace(self.PLACEHOLDER, str(getattr(result, self.pk_attname)), 1)


class QuickRowsMixin:
    """For a ModelAdmin whose list shows many rows: cheap row links and a plain checkbox per row."""

    def get_changelist(self, request, **kwargs):
        return QuickChangeList

    def action_checkbox(self, obj):
        # The same markup as Django's CheckboxInput, without a template render per row.
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            obj.pk,
            format_html(_("Select this object for an action - {}"), self.row_label(obj)),
        )

    def row_label(self, obj) -> str:
        return str(obj)


class PreviewRow:
    """A row of an intermediate page's table: its cells, and a CSS class ("refused" marks a row that will not go)."""

    def __init__(self, cells, css=""):
        self.cells, self.css = list(cells), css


def titled(base, title):
    """A list filter class with its own title: the admin writes "By <title>", so a field named "by" or "when" needs
    one that reads ("By staff member", "By date")."""

    class Titled(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.title = title

    Titled.__name__ = f"Titled{base.__name__}"
    return Titled


def choice_label(choices, value) -> str:
    """A choice's label in the active language, translated once per language rather than once per row."""
    return _choice_labels(choices, get_language()).get(value, value)


@lru_cache
def _choice_labels(choices, language) -> dict:
    return {value: str(label) for value, label in choices.choices}


def new_token() -> str:
    return secrets.token_urlsafe(16)


def token_was_used(request, token: str) -> bool:
    return token in request.session.get(USED_TOKENS, [])


def mark_token_used(request, token: str) -> None:
    # The session keeps the last tokens only: the ledger's idempotency keys are the lasting guard.
    used = request.session.get(USED_TOKENS, [])[-50:]
    request.session[USED_TOKENS] = [*used, token]


def warn_resubmitted(modeladmin, request) -> None:
    modeladmin.message_user(
        request,
        _("This form was already submitted; nothing was done a second time."),
        messages.WARNING,
    )


def is_confirmed(request) -> bool:
    return request.POST.get("post") == "yes"


def select_across(request) -> bool:
    return request.POST.get("select_across") == "1"


def action_page(
    modeladmin,
    request,
    queryset,
    *,
    form,
    title,
    action,
    summary,
    rows,
    columns,
    note="",
    balances_after=False,
    step="post",
    submit_label="",
    sections=(),
):
    """The intermediate page of an action: what it will do to which rows, with the form that confirms it."""
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "opts": opts,
        "app_label": opts.app_label,
        "action": action,
        "form": form,
        "summary": summary,
        "note": note,
        "columns": columns,
        "rows": [row if isinstance(row, PreviewRow) else PreviewRow(row) for row in rows],
        "selected_ids": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": select_across(request),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "media": modeladmin.media + form.media,
        "balances_after": balances_after,
        "reward_costs": reward_costs(form) if balances_after else {},
        # "post": this form confirms the action; "preview": it leads to the action's effect page first.
        "step": step,
        "submit_label": submit_label or _("Confirm"),
        "sections": sections,  # the effect of a "select all" job (EffectSection), above the form
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(request, ACTION_TEMPLATE, context)


def reward_costs(form) -> dict:
    """The catalog's costs by reward id, for the page to show the balance after "Give reward"."""
    field = form.fields.get("reward")
    if field is None:
        return {}
    return {str(pk): cost for pk, cost in field.queryset.values_list("pk", "points_cost")}


def report_refusals(modeladmin, request, refusals: list[str]) -> None:
    """Name what was refused and why; a long list is cut, with how many more there were."""
    if not refusals:
        return
    shown = "; ".join(refusals[:REFUSALS_SHOWN])
    more = len(refusals) - REFUSALS_SHOWN
    if more > 0:
        shown += " " + _("(and %(count)d more)") % {"count": more}
    modeladmin.message_user(
        request,
        _("Refused %(count)d: %(why)s") % {"count": len(refusals), "why": shown},
        messages.WARNING,
    )


# ---------------------------------------------------------------------------------------------------------------
# The effect page: what a bulk or destructive change will do (loyalty/services/previews.py), then one confirming POST

EFFECT_TEMPLATE = "admin/loyalty/effect_preview.html"


class EffectSection:
    """One change's effect on the page (a page may show several: one per customer group picked)."""

    def __init__(self, preview, heading=""):
        from tiers.models import Tier

        self.preview, self.heading = preview, heading
        tiers = Tier.objects.in_bulk()
        self.totals = preview.totals()
        self.refused = preview.refused
        self.rows = []
        for m in preview.members:
            before, after = tiers.get(m.tier_before), tiers.get(m.tier_after)
            move = ""
            if m.tier_before != m.tier_after:
                rank = [getattr(t, "threshold", -1) for t in (before, after)]
                move = "up" if rank[1] > rank[0] else "down"
            self.rows.append(
                {
                    "member": m,
                    "tier_before": before.name if before else "-",
                    "tier_after": after.name if after else "-",
                    "tier_move": move,
                    "refusals": m.refusals,
                }
            )


def effect_page(
    modeladmin,
    request,
    *,
    title,
    summary,
    sections,
    hidden,
    confirm_label,
    back_url="",
    original=None,
    note="",
    lines=(),
    line_columns=(),
    can_edit=False,
):
    """The intermediate page of a bulk or destructive change: its effect (members affected, points in and out,
    balances and tiers after, what will be refused and why), and a form of hidden fields that confirms it once
    (`hidden`: (name, value) pairs, the form's one-time token among them)."""
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "opts": opts,
        "app_label": opts.app_label,
        "original": original,
        "summary": summary,
        "note": note,
        "sections": sections,
        "hidden": hidden,
        "confirm_label": confirm_label,
        "back_url": back_url,
        "can_confirm": not any(s.preview.refusal for s in sections),
        "lines": lines,  # what the change is made of (New conversions: each conversion with its points)
        "line_columns": line_columns,
        "can_edit": can_edit,  # "Change the form": the action's form again, filled in (posts edit=yes)
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(request, EFFECT_TEMPLATE, context)


def form_fields_as_hidden(form) -> list[tuple[str, str]]:
    """A bound, valid form's fields as the hidden inputs of its effect page (names as the form's)."""
    pairs = []
    for name in form.fields:
        value = form.data.getlist(form.add_prefix(name)) if hasattr(form.data, "getlist") else [form.data.get(name)]
        pairs.extend((form.add_prefix(name), v) for v in value if v is not None)
    return pairs
