"""`{% program_dashboard %}`: the dashboard on the admin's home page, for who may read the liability report."""

import time

from django import template

from .. import charts
from ..admin.reports import can_read_reports
from ..selectors_liability import dashboard_figures

register = template.Library()


@register.inclusion_tag("admin/loyalty/dashboard.html", takes_context=True)
def program_dashboard(context):
    request = context.get("request")
    if request is None or not can_read_reports(request.user):
        return {"show": False}
    started = time.perf_counter()
    board = dashboard_figures()
    return {
        "show": True,
        "flows": charts.weekly_flows(board),
        "outstanding": charts.outstanding(board),
        "tiers": charts.members_by_tier(board),
        "sources": charts.top_sources(board),
        "health": charts.health(board),
        "board": board,
        "server_ms": round((time.perf_counter() - started) * 1000),
    }
