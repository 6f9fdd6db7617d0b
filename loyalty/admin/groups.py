"""Admin of customer groups, RFM scores and group actions. The members list filters by group with
members.CustomerGroupFilter, which the groups' member counts link to."""

import secrets

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Max
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..background import is_silent
from ..errors import LoyaltyError
from ..forms import LifetimeChoiceMixin
from ..ids import record_id
from ..models import CustomerGroup, GroupAction, JobStatus, MemberRFM
from ..rules import MAX_ACTION_POINTS
from ..selectors_groups import group_member_count
from ..services.groups import group_action_create, group_action_undo_request, group_static_members_add
from ..services.previews import group_action_preview, group_action_undo_preview, lifetime_choice
from .action_pages import (
    EffectSection,
    effect_page,
    form_fields_as_hidden,
    mark_token_used,
    new_token,
    token_was_used,
    warn_resubmitted,
)
from .members import CustomerGroupFilter
from .refusals import require_permission

FORM_PAGE = "admin/loyalty/customergroup/form_page.html"
MAX_EMAILS_UPLOAD_MB = 20


def rfm_refreshed_at():
    """When a refresh last changed the RFM scores (each refresh stamps the rows it changes), or None before any."""
    return MemberRFM.objects.aggregate(last=Max("computed_at"))["last"]


def members_url(group: CustomerGroup) -> str:
    """The members list filtered to the group."""
    return reverse("admin:loyalty_member_changelist") + "?" + urlencode({CustomerGroupFilter.parameter_name: group.pk})


class GroupActionForm(LifetimeChoiceMixin, forms.Form):
    field_order = ["apply_type", "points", "comment", "change_kind", "counts_toward_lifetime"]

    apply_type = forms.ChoiceField(
        label=_("Apply type"),
        choices=[("relative", _("Add or subtract points")), ("set", _("Set absolute value (each member ends at N)"))],
        initial="relative",
    )
    points = forms.IntegerField(
        label=_("Points"),
        min_value=-MAX_ACTION_POINTS,
        max_value=MAX_ACTION_POINTS,
        help_text=_(
            "Relative: a signed number (-200 takes 200). Set absolute value: the balance each member ends with; "
            "0 writes balances off."
        ),
    )
    comment = forms.CharField(
        label=_("Comment"), max_length=500, help_text=_("Shown in each member's activity, with the points.")
    )
    # One-time token of this form: sent twice (a double click, the back button), it starts the actions once.
    action_token = forms.CharField(widget=forms.HiddenInput, max_length=40, initial=lambda: secrets.token_urlsafe(16))

    def clean(self):
        data = super().clean()
        if data.get("apply_type") == "relative" and data.get("points") == 0:
            self.add_error("points", _("Points must not be 0."))
        if data.get("apply_type") == "set" and (data.get("points") or 0) < 0:
            self.add_error("points", _("Set absolute value needs 0 or more."))
        return data


class EmailsUploadForm(forms.Form):
    emails = forms.CharField(
        label=_("Emails"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 60}),
        help_text=_("One per line, or separated by commas or semicolons."),
    )
    file = forms.FileField(
        label=_("Or a file"), required=False, help_text=_("A .txt or .csv file; every email address in it is used.")
    )

    def clean(self):
        data = super().clean()
        upload = data.get("file")
        text = data.get("emails") or ""
        if upload:
            if upload.size > MAX_EMAILS_UPLOAD_MB * 1024 * 1024:
                raise forms.ValidationError(_("The file is larger than %(mb)s MB.") % {"mb": MAX_EMAILS_UPLOAD_MB})
            text += "\n" + upload.read().decode("utf-8-sig", errors="replace")
        if not text.strip():
            raise forms.ValidationError(_("Paste emails or choose a file."))
        data["text"] = text
        return data


@admin.register(CustomerGroup)
class CustomerGroupAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "members_now", "description"]
    search_fields = ["name"]
    actions = ["adjust_group_points"]
    change_form_template = "admin/loyalty/customergroup/change_form.html"
    change_list_template = "admin/loyalty/customergroup/change_list.html"
    fieldsets = [
        (None, {"fields": ["name", "description", "is_static"]}),
        (_("Who (a saved filter)"), {"fields": ["tier", "account", ("signed_up_from", "signed_up_to")]}),
        (
            _("Orders"),
            {
                "fields": [
                    ("last_order_from", "last_order_to"),
                    ("orders_min", "orders_max"),
                    ("spent_min", "spent_max"),
                ]
            },
        ),
        (
            _("RFM scores (1-5) or segment"),
            {
                "fields": [
                    ("recency_min", "recency_max"),
                    ("frequency_min", "frequency_max"),
                    ("monetary_min", "monetary_max"),
                    "segment",
                ],
                "description": _("Scores come from the last RFM refresh (nightly, or Refresh RFM scores)."),
            },
        ),
    ]

    @admin.display(description=_("kind"))
    def kind(self, group):
        return _("Static list") if group.is_static else _("Saved filter")

    @admin.display(description=_("members now"))
    def members_now(self, group):
        """The live count, filled in by the page once it is shown: a group filtering on orders counts over every
        order, and a list of such groups would otherwise wait for all of them before it appears."""
        url = members_url(group)
        count_url = reverse("admin:loyalty_customergroup_count", args=[group.pk])
        return format_html('<a href="{}" data-member-count-url="{}">…</a>', url, count_url)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def get_urls(self):
        urls = [
            path(
                "<int:pk>/upload-emails/",
                self.admin_site.admin_view(self.upload_emails_view),
                name="loyalty_customergroup_upload",
            ),
            path("refresh-rfm/", self.admin_site.admin_view(self.refresh_rfm_view), name="loyalty_customergroup_rfm"),
            path(
                "<int:pk>/member-count/",
                self.admin_site.admin_view(self.member_count_view),
                name="loyalty_customergroup_count",
            ),
        ]
        return urls + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        group = CustomerGroup.objects.filter(pk=record_id(object_id)).first()  # None for an id that cannot be one
        if group is not None:
            extra_context.update(
                rfm_refreshed_at=rfm_refreshed_at(),
                member_count=group_member_count(group),
                members_url=members_url(group),
                upload_url=reverse("admin:loyalty_customergroup_upload", args=[group.pk]),
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "rfm_refresh_url": reverse("admin:loyalty_customergroup_rfm"),
            "rfm_refreshed_at": rfm_refreshed_at(),
            "can_refresh_rfm": self.has_change_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def member_count_view(self, request, pk):
        if not self.has_view_permission(request):
            raise PermissionDenied
        group = get_object_or_404(CustomerGroup, pk=pk)
        count = group_member_count(group)
        return JsonResponse({"group": group.pk, "members": count, "label": f"{count:,}"})

    def refresh_rfm_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:loyalty_customergroup_changelist"))
        require_permission(request, "loyalty.change_customergroup")
        from ..tasks.groups import rfm_refresh_task

        rfm_refresh_task.delay()
        self.message_user(request, _("RFM scores are being refreshed in the background."), messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:loyalty_customergroup_changelist"))

    def upload_emails_view(self, request, pk):
        if not self.has_change_permission(request):
            raise PermissionDenied
        group = get_object_or_404(CustomerGroup, pk=pk)
        form = EmailsUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                result = group_static_members_add(group=group, text=form.cleaned_data["text"])
            except LoyaltyError as error:
                form.add_error(None, error.message)
            else:
                self._report_upload(request, result)
                return HttpResponseRedirect(reverse("admin:loyalty_customergroup_change", args=[group.pk]))
        return self._form_page(
            request,
            form,
            title=_("Upload emails to %(group)s") % {"group": group.name},
            intro=_("Members are matched by email; emails of no member are listed, not added."),
            submit_label=_("Add to the group"),
        )

    def _report_upload(self, request, result):
        self.message_user(
            request,
            _("Added %(added)s members (%(already)s were already in the group).")
            % {"added": result.added, "already": result.already_in},
            messages.SUCCESS,
        )
        if result.unknown:
            shown = ", ".join(result.unknown[:20]) + (" ..." if len(result.unknown) > 20 else "")
            self.message_user(
                request,
                ngettext(
                    "%(n)s email matches no member: %(list)s",
                    "%(n)s emails match no member: %(list)s",
                    len(result.unknown),
                )
                % {"n": len(result.unknown), "list": shown},
                messages.WARNING,
            )

    def _form_page(self, request, form, **context):
        return TemplateResponse(
            request,
            FORM_PAGE,
            {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form, **context},
        )

    @admin.action(description=_("Adjust points of the selected groups"), permissions=["act_on_group"])
    def adjust_group_points(self, request, queryset):
        """The form, then its effect on every group picked (the bulk path in dry-run), then one confirming POST."""
        confirmed, previewing = request.POST.get("post") == "yes", request.POST.get("preview") == "yes"
        editing = request.POST.get("edit") == "yes"  # "Change the form" on the effect page
        form = GroupActionForm(request.POST if confirmed or previewing or editing else None)
        if form.is_bound and form.is_valid() and not confirmed and not editing:
            return self._group_effect_page(request, queryset, form)
        if form.is_bound and form.is_valid() and confirmed:
            data = dict(form.cleaned_data)
            token = data.pop("action_token")
            data["counts_toward_lifetime"] = form.lifetime_answer()
            made = []
            for group in queryset.order_by("pk"):
                request_token = f"{token}:{group.pk}"
                if GroupAction.objects.filter(request_token=request_token).exists():
                    self.message_user(
                        request, _("This form was sent before: nothing was started again."), messages.WARNING
                    )
                    return None
                try:
                    made.append(
                        group_action_create(group=group, actor=request.user, request_token=request_token, **data)
                    )
                except LoyaltyError as error:
                    self.message_user(request, f"{group.name}: {error.message}", messages.ERROR)
                    return None
            self.message_user(
                request,
                ngettext(
                    "Started %(n)s group action; follow it under Group actions.",
                    "Started %(n)s group actions; follow them under Group actions.",
                    len(made),
                )
                % {"n": len(made)},
                messages.SUCCESS,
            )
            return None
        return self._form_page(
            request,
            form,
            title=_("Adjust points of a customer group"),
            intro=_("Runs in the background for every member in the group when it starts."),
            items=[f"{g.name}: {group_member_count(g):,} members now" for g in queryset],
            queryset=queryset,
            action="adjust_group_points",
            action_checkbox_name=admin.helpers.ACTION_CHECKBOX_NAME,
            submit_label=_("Preview the effect"),
            step="preview",
        )

    def _group_effect_page(self, request, queryset, form):
        data = form.cleaned_data
        counts = lifetime_choice(data["change_kind"], form.lifetime_answer())
        sections = [
            EffectSection(
                group_action_preview(
                    group=group,
                    apply_type=data["apply_type"],
                    points=data["points"],
                    comment=data["comment"],
                    counts=counts,
                    change_kind=data["change_kind"],
                    actor=request.user,
                ),
                heading=group.name,
            )
            for group in queryset.order_by("pk")
        ]
        if data["apply_type"] == "set":
            what = _("Set every member's available points to %(points)s") % {"points": f"{data['points']:,}"}
        elif data["points"] < 0:
            what = _("Take %(points)s points from every member") % {"points": f"{-data['points']:,}"}
        else:
            what = _("Give every member %(points)s points") % {"points": f"{data['points']:,}"}
        lifetime = _("counts toward lifetime and tiers") if counts else _("does not count toward lifetime; tiers stay")
        hidden = [
            *((k, v) for k, v in form_fields_as_hidden(form) if k != "counts_toward_lifetime"),
            ("counts_toward_lifetime", "yes" if counts else "no"),
            *((admin.helpers.ACTION_CHECKBOX_NAME, group.pk) for group in queryset),
            ("action", "adjust_group_points"),
        ]
        return effect_page(
            self,
            request,
            title=_("Adjust points of a customer group: the effect"),
            summary=f"{what} ({lifetime}). " + _("Nothing is posted until you confirm."),
            note=_(
                "Computed now by the same service that will post it; members who join or leave meanwhile change it."
            ),
            sections=sections,
            hidden=hidden,
            confirm_label=_("Confirm: start the group action"),
            can_edit=True,
            back_url=reverse("admin:loyalty_customergroup_changelist"),
        )

    def has_act_on_group_permission(self, request):
        return request.user.has_perm("loyalty.act_on_group")


@admin.register(GroupAction)
class GroupActionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "group",
        "apply_type",
        "points",
        "comment",
        "status",
        "progress_bar",
        "posted",
        "refused",
        "created_by",
        "created_at",
    ]
    list_filter = ["status", "apply_type"]
    list_select_related = ["group", "created_by"]
    change_form_template = "admin/loyalty/customergroup/groupaction_change_form.html"
    change_list_template = "admin/loyalty/customergroup/groupaction_change_list.html"
    actions = ["undo_group_actions"]
    readonly_fields = [
        "group",
        "apply_type",
        "points",
        "comment",
        "change_kind",
        "counts_toward_lifetime",
        "status",
        "members_total",
        "members_done",
        "posted",
        "unchanged",
        "refused",
        "points_credited",
        "points_debited",
        "problems",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "undone_at",
        "undone_by",
    ]

    def has_add_permission(self, request):
        return False  # group actions start from the customer group list ("Adjust points of the selected groups")

    def has_change_permission(self, request, obj=None):
        return False  # a record of what was posted: its page shows progress and the summary, and Undo

    def has_delete_permission(self, request, obj=None):
        return False  # the batch row is the record of what was posted

    @admin.display(description=_("progress"))
    def progress_bar(self, action):
        """A bar; an unfinished action's bar follows its status JSON while the list is open (the list's script)."""
        if action.status in FINISHED:
            return format_html('<progress max="100" value="{}"></progress> {}%', action.progress, action.progress)
        return format_html(
            '<progress max="100" value="{}" data-status-url="{}"></progress> <span>{}%</span>',
            action.progress,
            reverse("admin:loyalty_groupaction_status", args=[action.pk]),
            action.progress,
        )

    def get_urls(self):
        urls = [
            path(
                "<int:pk>/status.json", self.admin_site.admin_view(self.status_view), name="loyalty_groupaction_status"
            ),
            path("<int:pk>/undo/", self.admin_site.admin_view(self.undo_view), name="loyalty_groupaction_undo"),
            path("<int:pk>/resume/", self.admin_site.admin_view(self.resume_view), name="loyalty_groupaction_resume"),
        ]
        return urls + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        action = GroupAction.objects.filter(pk=record_id(object_id)).first()  # None for an id that cannot be one
        if action is not None:
            extra_context = {**(extra_context or {}), **status_context(action)}
            extra_context["status_url"] = reverse("admin:loyalty_groupaction_status", args=[action.pk])
            extra_context["undo_url"] = reverse("admin:loyalty_groupaction_undo", args=[action.pk])
            extra_context["can_undo"] = action.status in (JobStatus.DONE, JobStatus.FAILED) and request.user.has_perm(
                "loyalty.act_on_group"
            )
            extra_context["resume_url"] = reverse("admin:loyalty_groupaction_resume", args=[action.pk])
            extra_context["can_resume"] = request.user.has_perm("loyalty.act_on_group") and (
                action.status == JobStatus.FAILED
                or (action.status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.UNDOING) and is_silent(action))
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def _action(self, request, pk) -> GroupAction:
        """The action of a status, undo or resume address, for a user who may view actions (else 403)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(GroupAction, pk=record_id(pk) or 0)

    def status_view(self, request, pk):
        return JsonResponse(status_context(self._action(request, pk)))

    def undo_view(self, request, pk):
        """Undo this action: its effect first (the undo's own service in dry-run), then one confirming POST."""
        action = self._action(request, pk)
        require_permission(request, "loyalty.act_on_group")
        back = reverse("admin:loyalty_groupaction_change", args=[action.pk])
        if request.method == "POST" and request.POST.get("post") == "yes":
            token = request.POST.get("action_token", "")
            if token and token_was_used(request, token):
                warn_resubmitted(self, request)
            else:
                self._undo(request, [action])
                if token:
                    mark_token_used(request, token)
            return HttpResponseRedirect(back)
        return effect_page(
            self,
            request,
            title=_("Undo group action #%(id)s: the effect") % {"id": action.pk},
            summary=_(
                "Reverse the entries group action #%(id)s posted (%(comment)s). Points already spent follow the "
                "automatic-revert policy. Nothing is reversed until you confirm."
            )
            % {"id": action.pk, "comment": action.comment},
            sections=[EffectSection(group_action_undo_preview(action=action, actor=request.user))],
            hidden=[("action_token", new_token())],
            confirm_label=_("Confirm: undo this action"),
            back_url=back,
            original=action,
        )

    def resume_view(self, request, pk):
        """Queue again a silent or failed action's task (imports/services/stuck_jobs.py)."""
        action = self._action(request, pk)
        if request.method != "POST" or not request.user.has_perm("loyalty.act_on_group"):
            raise PermissionDenied
        from imports.services.stuck_jobs import job_resume  # imports builds on loyalty: imported where used

        if job_resume(kind="group", pk=action.pk):
            self.message_user(request, _("Group action #%(id)s resumed.") % {"id": action.pk}, messages.SUCCESS)
        else:
            self.message_user(request, _("Group action #%(id)s has nothing to resume.") % {"id": action.pk})
        return HttpResponseRedirect(reverse("admin:loyalty_groupaction_change", args=[action.pk]))

    @admin.action(description=_("Undo the selected group actions"), permissions=["act_on_group"])
    def undo_group_actions(self, request, queryset):
        """The undo's effect for each action picked (its own bulk path in dry-run), then one confirming POST."""
        actions = list(queryset.order_by("pk"))
        if request.POST.get("post") != "yes":
            return effect_page(
                self,
                request,
                title=_("Undo group actions: the effect"),
                summary=_("Reverse the entries of the group actions picked. Nothing is reversed until you confirm."),
                sections=[
                    EffectSection(group_action_undo_preview(action=action, actor=request.user), heading=str(action))
                    for action in actions
                ],
                hidden=[
                    ("action_token", new_token()),
                    ("action", "undo_group_actions"),
                    *((admin.helpers.ACTION_CHECKBOX_NAME, action.pk) for action in actions),
                ],
                confirm_label=_("Confirm: undo these actions"),
                back_url=reverse("admin:loyalty_groupaction_changelist"),
            )
        token = request.POST.get("action_token", "")
        if token and token_was_used(request, token):
            warn_resubmitted(self, request)
            return None
        self._undo(request, actions)
        if token:
            mark_token_used(request, token)
        return None

    def has_act_on_group_permission(self, request):
        return request.user.has_perm("loyalty.act_on_group")

    def _undo(self, request, actions):
        for action in actions:
            try:
                group_action_undo_request(action=action, actor=request.user)
            except LoyaltyError as error:
                self.message_user(request, error.message, messages.ERROR)
            else:
                self.message_user(request, _("Undoing group action #%(id)s.") % {"id": action.pk}, messages.SUCCESS)


FINISHED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.UNDONE)


def status_context(action: GroupAction) -> dict:
    """What the progress bar shows (also the JSON the page polls)."""
    action.refresh_from_db()
    finished = action.status in FINISHED
    summary = _(
        "%(done)s of %(total)s members; %(posted)s entries, +%(credited)s / -%(debited)s points; "
        "%(unchanged)s already at the value; %(refused)s refused"
    ) % {
        "done": f"{action.members_done:,}",
        "total": f"{action.members_total:,}",
        "posted": f"{action.posted:,}",
        "credited": f"{action.points_credited:,}",
        "debited": f"{action.points_debited:,}",
        "unchanged": f"{action.unchanged:,}",
        "refused": f"{action.refused:,}",
    }
    return {
        "status": action.status,
        "status_label": str(action.get_status_display()),
        "progress": action.progress,
        "summary": str(summary),
        "finished": finished,
        "reload": finished,
    }


@admin.register(MemberRFM)
class MemberRFMAdmin(admin.ModelAdmin):
    list_display = [
        "member",
        "recency",
        "frequency",
        "monetary",
        "segment",
        "order_count",
        "total_spent",
        "last_order_at",
        "computed_at",
    ]
    list_filter = ["segment", "recency", "frequency", "monetary"]
    search_fields = ["member__email"]
    list_select_related = ["member"]
    readonly_fields = list_display

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
