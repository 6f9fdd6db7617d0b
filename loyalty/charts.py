"""The dashboard's charts, drawn on the server as SVG with pygal (pinned in requirements.txt): no JavaScript and no
network at run time, inline in the page. Each function takes the figures (selectors_liability.Dashboard) and returns
the SVG markup."""

import pygal
from django.utils.safestring import mark_safe
from pygal.style import Style

STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#333",
    foreground_strong="#222",
    foreground_subtle="#999",
    colors=("#417690", "#e08a2e", "#a33", "#6a6", "#79aec8", "#b06ab3", "#777", "#c9b037"),
    font_family="-apple-system, 'Segoe UI', Roboto, sans-serif",
    title_font_size=15,
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=12,
)
COMMON = {
    "style": STYLE,
    "js": [],
    "disable_xml_declaration": True,
    "explicit_size": True,
    "height": 280,
    "width": 460,
}


def _svg(chart) -> str:
    return mark_safe(chart.render(is_unicode=True))  # noqa: S308 - pygal's own markup, labels escaped by it


def weekly_flows(board) -> str:
    chart = pygal.Bar(title="Points per week", x_label_rotation=30, show_minor_x_labels=False, **COMMON)
    chart.x_labels = [f"{w:%d %b}" for w in board.weeks]
    chart.x_labels_major = chart.x_labels[::4]
    chart.add("Issued", board.issued)
    chart.add("Redeemed", board.redeemed)
    chart.add("Expired", board.expired)
    chart.add("Reverted", board.reverted)
    return _svg(chart)


def outstanding(board) -> str:
    chart = pygal.Line(
        title="Outstanding points (available + pending)",
        x_label_rotation=30,
        show_minor_x_labels=False,
        fill=True,
        **COMMON,
    )
    chart.x_labels = [f"{w:%d %b}" for w in board.weeks]
    chart.x_labels_major = chart.x_labels[::4]
    chart.add("Outstanding", board.outstanding)
    return _svg(chart)


def members_by_tier(board) -> str:
    chart = pygal.Pie(title="Members by tier", inner_radius=0.45, **COMMON)
    for name, count in board.tiers:
        chart.add(name, count)
    return _svg(chart)


def top_sources(board) -> str:
    chart = pygal.HorizontalBar(title="Top sources of points (period)", **COMMON)
    for name, points in board.sources:
        chart.add(name, points)
    return _svg(chart)


def health(board) -> str:
    chart = pygal.Bar(title="Imports and webhooks, last 30 days", **COMMON)
    statuses = sorted(set(board.imports) | set(board.webhooks))
    chart.x_labels = ["Imports", "Webhooks"]
    for status in statuses:
        chart.add(status, [board.imports.get(status, 0), board.webhooks.get(status, 0)])
    return _svg(chart)
