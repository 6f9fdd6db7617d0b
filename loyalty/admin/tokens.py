"""Admin of reward tokens: issue tokens to members, close them by hand (a sale), reject them.

The member admin offers `issue_reward_tokens` (one token to each selected member); the member's page lists their
tokens (members.member_page_context).
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..errors import LoyaltyError
from ..models import CustomerGroup, EarnRule, EarnRuleKind, Member, RewardToken, TokenStatus
from ..selectors_groups import group_members
from ..services.tokens import token_close, token_reject, tokens_issue
from .action_pages import titled

FORM_PAGE = "admin/loyalty/customergroup/form_page.html"
MAX_ISSUE = 5_000  # tokens one admin request issues (one row each); more is a job for the tokens CSV


def _conversion_rules():
    return EarnRule.objects.filter(kind=EarnRuleKind.CONVERSION)


class IssueTokensForm(forms.Form):
    emails = forms.CharField(
        label=_("Members' emails"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60}),
        help_text=_("One per line, or separated by commas."),
    )
    group = forms.ModelChoiceField(
        label=_("Or every member of a customer group"), queryset=CustomerGroup.objects.all(), required=False
    )
    earn_rule = forms.ModelChoiceField(
        label=_("Way to earn"),
        queryset=EarnRule.objects.none(),
        required=False,
        help_text=_("Empty: the active conversion way to earn when the token closes."),
    )

    def __init__(self, *args, with_members=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["earn_rule"].queryset = _conversion_rules()
        if not with_members:
            del self.fields["emails"], self.fields["group"]

    def members(self):
        """The members to issue to; unknown emails are a form error so nothing is half-issued."""
        if self.cleaned_data.get("group"):
            return list(group_members(self.cleaned_data["group"]).order_by("pk")[: MAX_ISSUE + 1]), []
        emails = [e.strip().lower() for e in self.cleaned_data.get("emails", "").replace(",", "\n").split() if e]
        found = {m.email: m for m in Member.objects.filter(email__in=emails)}
        return [found[e] for e in dict.fromkeys(emails) if e in found], [e for e in emails if e not in found]

    def clean(self):
        data = super().clean()
        if "emails" in self.fields and not data.get("emails", "").strip() and not data.get("group"):
            raise forms.ValidationError(_("Give members' emails or choose a customer group."))
        return data


class CloseTokensForm(forms.Form):
    amount = forms.DecimalField(
        label=_("Sale amount"),
        required=False,
        min_value=0,
        max_digits=14,
        decimal_places=2,
        help_text=_("Optional: a way to earn with points per currency unit credits by it."),
    )


class RejectTokensForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=500)


@admin.register(RewardToken)
class RewardTokenAdmin(admin.ModelAdmin):
    list_display = ["token", "member", "status", "earn_rule", "amount", "created_at", "closed_at"]
    list_filter = ["status", ("earn_rule", titled(admin.RelatedFieldListFilter, _("way to earn")))]
    search_fields = ["token", "member__email"]
    list_select_related = ["member", "earn_rule"]
    raw_id_fields = ["member"]
    readonly_fields = ["status", "amount", "created_at", "closed_at"]
    actions = ["close_tokens", "reject_tokens"]

    def has_delete_permission(self, request, obj=None):
        return False  # a token may carry a credit; reject it instead

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (["token", "member"] if obj else [])

    def add_view(self, request, form_url="", extra_context=None):
        # Tokens are issued through the service (codes, checks), not by typing a row.
        if not self.has_add_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(reverse("admin:loyalty_rewardtoken_issue"))

    def get_urls(self):
        view = self.admin_site.admin_view(self.issue_view)
        return [path("issue/", view, name="loyalty_rewardtoken_issue"), *super().get_urls()]

    def _page(self, request, form, **context):
        return TemplateResponse(
            request,
            FORM_PAGE,
            {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form, **context},
        )

    def issue_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = IssueTokensForm(request.POST or None)
        if request.method == "POST" and form.is_valid() and (done := self._issue_from_form(request, form)):
            return done
        return self._page(
            request,
            form,
            title=_("Issue reward tokens"),
            submit_label=_("Issue tokens"),
            intro=_("Each member gets one new token with a unique code."),
        )

    def _issue_from_form(self, request, form):
        members, unknown = form.members()
        if unknown:
            form.add_error("emails", _("No member has these emails: %(list)s") % {"list": ", ".join(unknown[:20])})
            return None
        if len(members) > MAX_ISSUE:
            form.add_error("group", _("More than %(n)s members: use the tokens CSV instead.") % {"n": f"{MAX_ISSUE:,}"})
            return None
        try:
            tokens = tokens_issue(members=members, actor=request.user, earn_rule=form.cleaned_data.get("earn_rule"))
        except LoyaltyError as error:
            form.add_error(None, error.message)
            return None
        self.message_user(
            request,
            ngettext("Issued %(n)s reward token.", "Issued %(n)s reward tokens.", len(tokens)) % {"n": len(tokens)},
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:loyalty_rewardtoken_changelist"))

    def _action_page(self, request, queryset, form, *, action, title, submit_label, intro=""):
        return self._page(
            request,
            form,
            title=title,
            submit_label=submit_label,
            intro=intro,
            queryset=queryset,
            items=[f"{t.token} ({t.member.email}, {t.get_status_display()})" for t in queryset[:50]],
            action=action,
            action_checkbox_name=admin.helpers.ACTION_CHECKBOX_NAME,
        )

    @admin.action(description=_("Close as sale: credit the conversion points"), permissions=["change"])
    def close_tokens(self, request, queryset):
        form = CloseTokensForm(request.POST if request.POST.get("post") == "yes" else None)
        if not (form.is_bound and form.is_valid()):
            return self._action_page(
                request,
                queryset.select_related("member"),
                form,
                action="close_tokens",
                title=_("Close reward tokens"),
                submit_label=_("Credit the points"),
                intro=_("Each token credits its member the conversion points once."),
            )
        credited = points = already = 0
        for token in queryset.order_by("pk"):
            try:
                result = token_close(token=token.token, amount=form.cleaned_data["amount"], actor=request.user)
            except LoyaltyError as error:
                self.message_user(request, error.message, messages.ERROR)
                continue
            already += result.already_applied
            credited += bool(result.points)
            points += result.points
        self.message_user(
            request,
            ngettext("Credited %(n)s token: %(points)s points.", "Credited %(n)s tokens: %(points)s points.", credited)
            % {"n": credited, "points": f"{points:+,}"}
            + (f" {already} " + str(_("were already credited.")) if already else ""),
            messages.SUCCESS,
        )
        return None

    @admin.action(description=_("Reject: reject the pending credit"), permissions=["change"])
    def reject_tokens(self, request, queryset):
        form = RejectTokensForm(request.POST if request.POST.get("post") == "yes" else None)
        if not (form.is_bound and form.is_valid()):
            return self._action_page(
                request,
                queryset.select_related("member"),
                form,
                action="reject_tokens",
                title=_("Reject reward tokens"),
                submit_label=_("Reject"),
            )
        rejected = 0
        for token in queryset.exclude(status=TokenStatus.REJECTED).order_by("pk"):
            try:
                token_reject(token=token.token, reason=form.cleaned_data["reason"], actor=request.user)
            except LoyaltyError as error:
                self.message_user(request, error.message, messages.ERROR)
                continue
            rejected += 1
        self.message_user(
            request,
            ngettext("Rejected %(n)s token.", "Rejected %(n)s tokens.", rejected) % {"n": rejected},
            messages.SUCCESS,
        )
        return None


@admin.action(description=_("Issue a reward token to each selected member"), permissions=["change"])
def issue_reward_tokens(modeladmin, request, queryset):
    """For MemberAdmin.actions: one new token per selected member, for the active conversion way to earn."""
    if queryset.count() > MAX_ISSUE:
        # All or nothing: a silent cut at the limit would leave the merchant guessing who got a token.
        modeladmin.message_user(
            request, _("More than %(n)s members: use the tokens CSV instead.") % {"n": f"{MAX_ISSUE:,}"}, messages.ERROR
        )
        return None
    try:
        tokens = tokens_issue(members=list(queryset.order_by("pk")), actor=request.user)
    except LoyaltyError as error:
        modeladmin.message_user(request, error.message, messages.ERROR)
        return None
    modeladmin.message_user(
        request,
        ngettext("Issued %(n)s reward token.", "Issued %(n)s reward tokens.", len(tokens)) % {"n": len(tokens)},
        messages.SUCCESS,
    )
    return None
