"""Admin of Reward past actions runs: a preview with the counts, confirm, a progress bar, the summary, and undo."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from loyalty.admin.action_pages import (
    EffectSection,
    effect_page,
    mark_token_used,
    new_token,
    token_was_used,
    warn_resubmitted,
)
from loyalty.admin.display import earning_text, store_currency
from loyalty.admin.refusals import require_permission
from loyalty.background import is_silent
from loyalty.errors import LoyaltyError
from loyalty.ids import record_id

from ..models import BackfillRun, BackfillStatus
from ..services.backfill import backfill_preview, backfill_run_create, backfill_undo_preview, backfill_undo_request
from ..services.stuck_jobs import job_resume

RUN_PERMISSION = "imports.run_backfill"


def gives(points, per_unit) -> str:
    """What a way to earn gives, with its unit: "200 points", "1 point per $1"."""
    return earning_text(fixed_points=points, per_unit=per_unit, currency=store_currency())


FINISHED = (BackfillStatus.DONE, BackfillStatus.FAILED, BackfillStatus.UNDONE)


def status_context(run: BackfillRun) -> dict:
    """What the progress bar shows (also the JSON the run's page polls)."""
    run.refresh_from_db()
    summary = _(
        "%(members)s members and %(orders)s orders credited, %(points)s points; %(already)s already credited before"
    ) % {
        "members": f"{run.members_credited:,}",
        "orders": f"{run.orders_credited:,}",
        "points": f"{run.points_credited:,}",
        "already": f"{run.already_credited:,}",
    }
    if run.status == BackfillStatus.UNDONE:
        summary = f"{summary}. " + _("Undone: %(n)s entries reversed.") % {"n": f"{run.undo_reversed:,}"}
    if run.error:
        summary = f"{summary}. {run.error}"
    finished = run.status in FINISHED
    return {
        "status": run.status,
        "status_label": str(run.get_status_display()),
        "progress": run.progress,
        "summary": str(summary),
        "finished": finished,
        "reload": finished,
    }


@admin.register(BackfillRun)
class BackfillRunAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "status",
        "members_credited",
        "orders_credited",
        "points_credited",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status"]
    change_form_template = "admin/imports/backfillrun/change_form.html"
    readonly_fields = [
        "status",
        "program_started_at",
        "members_credited",
        "orders_credited",
        "points_credited",
        "already_credited",
        "error",
        "undo_reversed",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "undone_at",
        "undone_by",
    ]
    exclude = ["rules"]

    def has_delete_permission(self, request, obj=None):
        return False  # the run is the record of what was credited

    def has_add_permission(self, request):
        return request.user.has_perm(RUN_PERMISSION)

    def get_urls(self):
        urls = [
            path(
                "<int:pk>/status.json", self.admin_site.admin_view(self.status_view), name="imports_backfillrun_status"
            ),
            path("<int:pk>/undo/", self.admin_site.admin_view(self.undo_view), name="imports_backfillrun_undo"),
            path("<int:pk>/resume/", self.admin_site.admin_view(self.resume_view), name="imports_backfillrun_resume"),
        ]
        return urls + super().get_urls()

    def add_view(self, request, form_url="", extra_context=None):
        """The preview, and its confirm button: "Add" on the runs list is "Reward past actions"."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            try:
                run = backfill_run_create(actor=request.user)
            except LoyaltyError as error:
                self.message_user(request, error.message, messages.ERROR)
            else:
                self.message_user(
                    request, _("Reward past actions started: run #%(id)s.") % {"id": run.pk}, messages.SUCCESS
                )
                return HttpResponseRedirect(reverse("admin:imports_backfillrun_change", args=[run.pk]))
        preview = backfill_preview()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "preview": preview,
            "lines": [(line, gives(line.points, line.points_per_currency_unit)) for line in preview.lines],
            "title": _("Reward past actions"),
        }
        return TemplateResponse(request, "admin/imports/backfillrun/preview.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = BackfillRun.objects.filter(pk=record_id(object_id)).first()  # None for an id that cannot be one
        if run is not None:
            extra_context = {
                **(extra_context or {}),
                **status_context(run),
                "rules": [(rule, gives(rule["points"], rule["points_per_currency_unit"])) for rule in run.rules],
                "status_url": reverse("admin:imports_backfillrun_status", args=[run.pk]),
                "undo_url": reverse("admin:imports_backfillrun_undo", args=[run.pk]),
                "can_undo": run.status in (BackfillStatus.DONE, BackfillStatus.FAILED)
                and request.user.has_perm(RUN_PERMISSION),
                "resume_url": reverse("admin:imports_backfillrun_resume", args=[run.pk]),
                "can_resume": request.user.has_perm(RUN_PERMISSION)
                and (
                    run.status == BackfillStatus.FAILED
                    or (
                        run.status in (BackfillStatus.QUEUED, BackfillStatus.RUNNING, BackfillStatus.UNDOING)
                        and is_silent(run)
                    )
                ),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def has_change_permission(self, request, obj=None):
        return False  # a run is read-only: its page shows progress and the summary

    def _run(self, request, pk) -> BackfillRun:
        """The run of a status, undo or resume address, for a user who may view runs (else 403)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(BackfillRun, pk=record_id(pk) or 0)

    def status_view(self, request, pk):
        return JsonResponse(status_context(self._run(request, pk)))

    def resume_view(self, request, pk):
        """Queue again a silent or failed run's task (imports/services/stuck_jobs.py)."""
        run = self._run(request, pk)
        if request.method != "POST" or not request.user.has_perm(RUN_PERMISSION):
            raise PermissionDenied
        if job_resume(kind="backfill", pk=run.pk):
            self.message_user(request, _("Run #%(id)s resumed.") % {"id": run.pk}, messages.SUCCESS)
        else:
            self.message_user(request, _("Run #%(id)s has nothing to resume.") % {"id": run.pk})
        return HttpResponseRedirect(reverse("admin:imports_backfillrun_change", args=[run.pk]))

    def undo_view(self, request, pk):
        """Undo run: its effect first (the undo's own bulk path in dry-run), then one confirming POST."""
        run = self._run(request, pk)
        require_permission(request, RUN_PERMISSION)
        back = reverse("admin:imports_backfillrun_change", args=[run.pk])
        if request.method == "POST" and request.POST.get("post") == "yes":
            token = request.POST.get("action_token", "")
            if token and token_was_used(request, token):
                warn_resubmitted(self, request)
                return HttpResponseRedirect(back)
            try:
                backfill_undo_request(run=run, actor=request.user)
            except LoyaltyError as error:
                self.message_user(request, error.message, messages.ERROR)
            else:
                self.message_user(request, _("Undoing run #%(id)s.") % {"id": run.pk}, messages.SUCCESS)
            if token:
                mark_token_used(request, token)
            return HttpResponseRedirect(back)
        return effect_page(
            self,
            request,
            title=_("Undo run #%(id)s: the effect") % {"id": run.pk},
            summary=_(
                "Reverse every credit of Reward past actions run #%(id)s: pending ones are rejected, active ones "
                "reversed; points already spent follow the automatic-revert policy. Nothing is reversed until you "
                "confirm."
            )
            % {"id": run.pk},
            sections=[EffectSection(backfill_undo_preview(run=run, actor=request.user))],
            hidden=[("action_token", new_token())],
            confirm_label=_("Confirm: undo this run"),
            back_url=back,
            original=run,
        )
