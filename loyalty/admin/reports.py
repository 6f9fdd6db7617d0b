"""The liability report (a page for program managers, with a CSV export) and the dashboard on the admin's home page.

Both read loyalty.selectors_liability: the ledger's daily totals kept by beat, topped up from the ledger for the
days not stored yet. The report's permission (loyalty.view_liabilityreport, a program manager's) also decides who
sees the dashboard: support agents keep the plain home page.
"""

import csv
from datetime import date

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy

from ..models import LiabilityReport
from ..selectors_liability import liability_csv_rows, liability_on
from ..timezones import day_refusal, store_today

PERMISSION = "loyalty.view_liabilityreport"


def can_read_reports(user) -> bool:
    return bool(user and user.is_active and user.is_staff and user.has_perm(PERMISSION))


@admin.register(LiabilityReport)
class LiabilityReportAdmin(admin.ModelAdmin):
    """The report is this model's list page: `?on=YYYY-MM-DD` picks the date, `?format=csv` downloads it."""

    def has_view_permission(self, request, obj=None):
        return can_read_reports(request.user)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        if not can_read_reports(request.user):
            raise PermissionDenied
        text = (request.GET.get("on") or "").strip()
        error = None
        day = store_today()
        if text:
            try:
                asked = date.fromisoformat(text)
            except ValueError:
                error = gettext_lazy("“%(text)s” is not a date: write it as YYYY-MM-DD.") % {"text": text}
            else:
                error = day_refusal(asked)
                day = day if error else asked
        report = liability_on(day)
        if request.GET.get("format") == "csv" and not error:
            response = HttpResponse(content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="liability-{day.isoformat()}.csv"'
            writer = csv.writer(response)
            for row in liability_csv_rows(report):
                writer.writerow(row)
            return response
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": gettext_lazy("Liability report"),
            "report": report,
            "day": day,
            "error": error,
            "today": store_today(),
            "lines_by_tier": [(line, report.value(line.total)) for line in report.by_tier],
            "lines_by_source": [(line, report.value(line.total)) for line in report.by_source],
            "expiring": [(month, points, report.value(points)) for month, points in report.expiring],
        }
        return TemplateResponse(request, "admin/loyalty/liabilityreport/report.html", context)
