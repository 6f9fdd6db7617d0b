"""The admin's 403 page: what permission was missing, and who has it (the roles, a few staff by name).

Every refusal in the site comes here (config/urls.py's handler403): Django's own pages, the actions, and the buttons
of each area. A view that checks a permission itself raises MissingPermission so the page names it exactly; any other
refusal is named from what the user was refused during the request (accounts.permissions.RefusalRecorder).
"""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _

from accounts.permissions import missing_permission, permission_holders, permission_label

TEMPLATE = "admin/403.html"


class MissingPermission(PermissionDenied):
    """A refusal that names its permission ("app_label.codename")."""

    def __init__(self, permission: str):
        super().__init__(permission)
        self.permission = permission


def require_permission(request, permission: str) -> None:
    """Raise MissingPermission unless the staff member has `permission` ("app_label.codename")."""
    if not request.user.has_perm(permission):
        raise MissingPermission(permission)


def permission_denied(request, exception=None):
    """The 403 page, in the admin's style, for every refusal (handler403)."""
    # Read before the page's side menu asks about every model and adds its own refusals.
    permission = getattr(exception, "permission", None) or missing_permission(request.user)
    detail = str(exception or "")
    context = {
        **admin.site.each_context(request),
        "title": _("You cannot do this"),
        "permission": permission,
        "permission_label": permission_label(permission) if permission else "",
        "detail": "" if detail == permission else detail,
    }
    if permission:
        context["roles"], context["holders"] = permission_holders(permission)
    response = TemplateResponse(request, TEMPLATE, context, status=403)
    return response.render()
