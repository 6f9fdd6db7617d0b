"""Admin of CSV upload jobs: upload, the preview, Apply with a progress bar, the error file, Resume and Undo.

Each button is a small admin view (get_urls) that checks a permission, calls one service and queues one task.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _

from loyalty.admin.action_pages import EffectSection, mark_token_used, new_token, token_was_used, warn_resubmitted
from loyalty.admin.refusals import require_permission
from loyalty.background import is_silent
from loyalty.errors import LoyaltyError
from loyalty.ids import record_id

from ..forms import ImportUploadForm, UndoForm
from ..models import ImportJob, ImportStatus
from ..services.jobs import (
    IN_FLIGHT,
    ImportJobError,
    import_job_request_apply,
    import_job_request_undo,
    import_job_status,
    import_job_submit,
    import_job_undo_preview,
)
from ..services.kinds import KINDS
from ..services.stuck_jobs import job_resume

APPLY_PERMISSION = "imports.apply_importjob"
UNDO_PERMISSION = "imports.undo_importjob"
# While a job is in one of these, its page polls the status: an upload waits for its check to start.


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["id", "original_name", "kind", "status", "total", "applied", "failed", "created_by", "created_at"]
    list_filter = ["kind", "status"]
    search_fields = ["original_name", "checksum", "reason"]
    list_select_related = ["created_by"]
    date_hierarchy = "created_at"

    def has_change_permission(self, request, obj=None):
        return False  # a job is changed by its buttons only

    def has_delete_permission(self, request, obj=None):
        return False  # the job is the audit trail of what its entries say

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/status/", view(self.status_view), name="imports_importjob_status"),
            path("<int:pk>/apply/", view(self.apply_view), name="imports_importjob_apply"),
            path("<int:pk>/resume/", view(self.resume_view), name="imports_importjob_resume"),
            path("<int:pk>/undo/", view(self.undo_view), name="imports_importjob_undo"),
            path("<int:pk>/errors/", view(self.errors_view), name="imports_importjob_errors"),
            *super().get_urls(),
        ]

    # -- upload -------------------------------------------------------------------------------------------------

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                job = import_job_submit(
                    kind=form.cleaned_data["kind"],
                    upload=form.cleaned_data["file"],
                    reason=form.cleaned_data["reason"],
                    actor=request.user,
                    change_kind=form.cleaned_data["change_kind"],
                    counts_toward_lifetime=form.lifetime_answer(),
                )
            except ImportJobError as exc:
                form.add_error("file", exc.message)
            else:
                self.message_user(request, _("Uploaded. The file is being checked; the preview appears below."))
                return HttpResponseRedirect(self._job_url(job))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Upload a file"),
            "form": form,
            "kinds": [(name, kind.columns, kind.required, kind.one_of) for name, kind in KINDS.items()],
        }
        return TemplateResponse(request, "admin/imports/importjob/upload.html", context)

    # -- the job page ---------------------------------------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self._job(request, object_id)
        can_apply = request.user.has_perm(APPLY_PERMISSION)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": str(job),
            "job": job,
            "original": job,
            "previous": job.previous_upload,
            "later_uploads": job.later_uploads,
            "running": job.status in IN_FLIGHT,
            "can_apply": can_apply and job.status == ImportStatus.CHECKED and job.to_apply > 0,
            # A job in flight whose task went silent (its worker or the web process died before queueing it), or an
            # apply that failed after its check: Resume queues the task it needs again.
            "can_resume": can_apply
            and (
                (job.status in IN_FLIGHT and is_silent(job))
                or (job.status == ImportStatus.FAILED and job.checked_at is not None)
            ),
            "can_undo": request.user.has_perm(UNDO_PERMISSION)
            and KINDS[job.kind].undoable
            and (job.status == ImportStatus.APPLIED or (job.status == ImportStatus.FAILED and job.has_applied_rows)),
            "status_url": reverse("admin:imports_importjob_status", args=[job.pk]),
        }
        return TemplateResponse(request, "admin/imports/importjob/job.html", context)

    def status_view(self, request, pk):
        """The small JSON the job page polls to draw its progress bar."""
        return JsonResponse(import_job_status(self._job(request, pk)))

    @staticmethod
    def _job_url(job):
        return reverse("admin:imports_importjob_change", args=[job.pk])

    def _job(self, request, pk) -> ImportJob:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if not (job_id := record_id(pk)):  # a mistyped address is "not found", never a server error
            raise Http404(_("No import job at this address."))
        return get_object_or_404(ImportJob.objects.select_related("created_by"), pk=job_id)

    # -- buttons --------------------------------------------------------------------------------------------------

    def _require(self, request, permission):
        require_permission(request, permission)

    def apply_view(self, request, pk):
        return self._apply_or_resume(request, pk, resume=False)

    def resume_view(self, request, pk):
        return self._apply_or_resume(request, pk, resume=True)

    def _apply_or_resume(self, request, pk, *, resume: bool):
        if request.method != "POST":
            return HttpResponseRedirect(self._job_url(self._job(request, pk)))
        self._require(request, APPLY_PERMISSION)
        job = self._job(request, pk)
        if resume:
            step = job_resume(kind="import", pk=job.pk)
            message = {
                "check": _("Checking import #%(id)s again in the background."),
                "apply": _("Applying import #%(id)s in the background."),
                "undo": _("Undoing import #%(id)s in the background."),
            }.get(step)
        else:
            try:
                started = import_job_request_apply(job=job, actor=request.user)
            except LoyaltyError as refused:  # the staff policy's answer (loyalty.services.staff)
                self.message_user(request, refused.message, messages.ERROR)
                return HttpResponseRedirect(self._job_url(job))
            message = started and _("Applying import #%(id)s in the background.")
        if message:
            self.message_user(request, message % {"id": job.pk})
        else:
            job.refresh_from_db()
            self.message_user(
                request,
                _("Import #%(id)s cannot be applied now: it is %(status)s.")
                % {"id": job.pk, "status": job.get_status_display().lower()},
                messages.WARNING,
            )
        return HttpResponseRedirect(self._job_url(job))

    def undo_view(self, request, pk):
        self._require(request, UNDO_PERMISSION)
        job = self._job(request, pk)
        form = UndoForm(request.POST or None)
        if request.method == "POST" and request.POST.get("post") == "yes" and form.is_valid():
            token = request.POST.get("action_token", "")
            if token and token_was_used(request, token):
                warn_resubmitted(self, request)
                return HttpResponseRedirect(self._job_url(job))
            try:
                import_job_request_undo(job=job, actor=request.user, reason=form.cleaned_data["reason"])
            except (ImportJobError, LoyaltyError) as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, _("Undoing import #%(id)s in the background.") % {"id": job.pk})
            if token:
                mark_token_used(request, token)
            return HttpResponseRedirect(self._job_url(job))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": job,
            "title": _("Undo import #%(id)s") % {"id": job.pk},
            "summary": _(
                "Reverse the %(count)s entries import #%(id)s made (%(credited)s points credited, %(debited)s "
                "debited). Pending ones are rejected; entries whose points were already spent are reported."
            )
            % {
                "count": f"{job.applied:,}",
                "id": job.pk,
                "credited": f"{job.points_credited:,}",
                "debited": f"{job.points_debited:,}",
            },
            "form": form,
            # The undo's own bulk path in dry-run: who it touches, points back out and in, tiers, what it refuses.
            "sections": [EffectSection(import_job_undo_preview(job=job, actor=request.user))],
            "action_token": new_token(),
        }
        return TemplateResponse(request, "admin/imports/importjob/undo.html", context)

    def errors_view(self, request, pk):
        job = self._job(request, pk)
        if not job.error_file:
            raise Http404(_("This import has no error file."))
        return FileResponse(
            job.error_file.open("rb"),
            as_attachment=True,
            filename=f"import-{job.pk}-errors.csv",
            content_type="text/csv",
        )
