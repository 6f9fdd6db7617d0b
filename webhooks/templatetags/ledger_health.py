"""`{% ledger_check_warning %}`: a red line on an admin page when the last nightly ledger check found differences.

Used on the order and webhook lists; the admin index and the program settings page can load it the same way.
"""

from django import template

from loyalty.models import ProgramSettings

register = template.Library()


@register.inclusion_tag("admin/webhooks/ledger_check_warning.html")
def ledger_check_warning():
    program = ProgramSettings.objects.filter(pk=1).only("last_reconcile_at", "last_reconcile_ok").first()
    return {"program": program}
