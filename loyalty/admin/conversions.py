"""Staff credits of conversions: "Add conversion / points" (by email, or by token once) and "New conversions"."""

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from ..errors import LoyaltyError
from ..forms import AddConversionForm
from ..ids import record_id
from ..services.conversions import (
    chosen_conversions,
    conversion_credit,
    conversion_lines,
    conversions_preview,
    conversions_reward,
    new_conversions,
)
from .action_pages import (
    EffectSection,
    action_page,
    effect_page,
    mark_token_used,
    new_token,
    report_refusals,
    token_was_used,
    warn_resubmitted,
)
from .refusals import require_permission

CREDIT_PERMISSION = "loyalty.adjust_points"  # crediting a conversion by hand is a staff credit of points


def conversion_urls(model_admin):
    """The two pages, hung on the members' admin (the reward tokens' admin belongs to the tokens area)."""
    view = model_admin.admin_site.admin_view
    pages = ConversionPages(model_admin)
    return [
        path("add-conversion/", view(pages.add_conversion_view), name="loyalty_add_conversion"),
        path("new-conversions/", view(pages.new_conversions_view), name="loyalty_new_conversions"),
    ]


class ConversionPages:
    def __init__(self, model_admin):
        self.model_admin = model_admin
        self.admin_site = model_admin.admin_site
        self.model = model_admin.model
        self.media = model_admin.media

    def message_user(self, *args, **kwargs):
        return self.model_admin.message_user(*args, **kwargs)

    def add_conversion_view(self, request):
        require_permission(request, CREDIT_PERMISSION)
        form = AddConversionForm(request.POST or None, initial={"action_token": new_token()})
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            if token_was_used(request, data["action_token"]):
                warn_resubmitted(self, request)
                return HttpResponseRedirect(request.path)
            try:
                result = conversion_credit(
                    actor=request.user,
                    reason=data["reason"],
                    token=data["token"],
                    email=data["email"],
                    points=data["points"],
                    idempotency_key=f"admin:{data['action_token']}:conversion",
                )
            except LoyaltyError as error:
                form.add_error(None, error.message)
            else:
                mark_token_used(request, data["action_token"])
                self._report_credit(request, result)
                return HttpResponseRedirect(reverse("admin:loyalty_member_change", args=[result.member.pk]))
        return action_page(
            self,
            request,
            None,
            form=form,
            title=_("Add conversion / points"),
            action="",
            summary=_("Credit a conversion by reward token (once per token) or by a member's email."),
            rows=[],
            columns=[],
        )

    def _report_credit(self, request, result):
        if result.already_applied:
            self.message_user(
                request,
                _("This conversion was already credited to %(email)s; nothing was credited again.")
                % {"email": result.member.email},
                messages.WARNING,
            )
            return
        entry = result.entry
        self.message_user(
            request,
            _("Credited %(points)s points to %(email)s (%(status)s).")
            % {"points": f"{entry.points:,}", "email": result.member.email, "status": entry.get_status_display()},
        )

    def new_conversions_view(self, request):
        """The list (nothing ticked; each conversion's points), then the effect of the ticked ones, then one
        confirming POST with a one-time token."""
        require_permission(request, CREDIT_PERMISSION)
        if request.method == "POST" and request.POST.get("post") == "yes":
            token = request.POST.get("action_token", "")
            if token and token_was_used(request, token):
                warn_resubmitted(self, request)
                return HttpResponseRedirect(request.path)
            self._reward(request)
            if token:
                mark_token_used(request, token)
            return HttpResponseRedirect(request.path)
        chosen = {"order": _ids(request, "order"), "token": _ids(request, "token"), "signup": _ids(request, "signup")}
        if request.method == "POST":
            if not any(chosen.values()):
                self.message_user(request, _("Tick the conversions to reward first."), messages.WARNING)
                return HttpResponseRedirect(request.path)
            return self._effect(request, chosen)
        lines = conversion_lines(new_conversions())
        context = {
            **self.admin_site.each_context(request),
            "title": _("New conversions of the last 30 days, not rewarded yet"),
            "opts": self.model._meta,
            "app_label": self.model._meta.app_label,
            "lines": lines,
            "total": sum(line.points for kind in lines.values() for line in kind),
        }
        return TemplateResponse(request, "admin/loyalty/member/new_conversions.html", context)

    def _effect(self, request, chosen):
        lines = conversion_lines(
            chosen_conversions(order_ids=chosen["order"], token_ids=chosen["token"], member_ids=chosen["signup"])
        )
        shown = [line for kind in ("order", "token", "signup") for line in lines[kind]]
        total = sum(line.points for line in shown)
        missing = sum(map(len, chosen.values())) - len(shown)
        note = ""
        if missing:
            note = ngettext(
                "%(n)d ticked row is no longer a new conversion (rewarded meanwhile): it is left out.",
                "%(n)d ticked rows are no longer new conversions (rewarded meanwhile): they are left out.",
                missing,
            ) % {"n": missing}
        hidden = [("action_token", new_token())]
        hidden += [(kind, line.obj.pk) for kind in ("order", "token", "signup") for line in lines[kind]]
        return effect_page(
            self,
            request,
            title=_("Reward new conversions: the effect"),
            summary=ngettext(
                "Reward %(n)d conversion: %(points)s points in all. Nothing is credited until you confirm.",
                "Reward %(n)d conversions: %(points)s points in all. Nothing is credited until you confirm.",
                len(shown),
            )
            % {"n": len(shown), "points": f"{total:,}"},
            note=note,
            lines=[(_line_label(line), _line_email(line), f"{line.points:+,}") for line in shown],
            line_columns=[_("Conversion"), _("Member"), _("Points")],
            sections=[EffectSection(conversions_preview(lines=lines, actor=request.user))],
            hidden=hidden,
            confirm_label=_("Confirm: reward these conversions"),
            back_url=request.path,
        )

    def _reward(self, request):
        done = conversions_reward(
            actor=request.user,
            order_ids=_ids(request, "order"),
            token_ids=_ids(request, "token"),
            member_ids=_ids(request, "signup"),
        )
        self.message_user(
            request,
            ngettext(
                "Rewarded %(count)d conversion: %(points)s points.",
                "Rewarded %(count)d conversions: %(points)s points.",
                done.credited,
            )
            % {"count": done.credited, "points": f"{done.points:,}"},
        )
        if done.already:
            self.message_user(
                request,
                ngettext("%(count)d was already rewarded.", "%(count)d were already rewarded.", done.already)
                % {"count": done.already},
                messages.WARNING,
            )
        report_refusals(self, request, done.refused)


def _line_label(line) -> str:
    if line.kind == "order":
        return str(line.obj)
    if line.kind == "token":
        return _("Reward token %(token)s") % {"token": line.obj.token}
    return _("Sign-up")


def _line_email(line) -> str:
    member = line.obj if line.kind == "signup" else line.obj.member
    return member.email if member else ""


def _ids(request, name):
    return [i for v in request.POST.getlist(name) if (i := record_id(v))]
