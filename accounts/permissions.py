"""Which permission a staff member was refused, and who has it: what the admin's 403 page tells.

`RefusalRecorder` is the last authentication backend. Django asks the backends in turn and stops at the first that
grants a permission, so this one is asked only about permissions every other backend refused; it notes them on the
user object and refuses too. It authenticates nobody. The 403 page reads the notes, so every refusal, whatever page
raised it, can name what was missing without each view having to say it.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models import Q

REFUSED_ATTRIBUTE = "_refused_permissions"
KEPT = 50  # a page's side menu asks about every model; only the last refusals matter
HOLDERS_SHOWN = 5


class RefusalRecorder:
    """An authentication backend that grants nothing and remembers what was refused (see the module's docstring)."""

    def authenticate(self, request, **credentials):
        return None

    def get_user(self, user_id):
        return None

    def has_perm(self, user_obj, perm, obj=None):
        refused = user_obj.__dict__.setdefault(REFUSED_ATTRIBUTE, [])
        refused.append(perm)
        del refused[:-KEPT]
        return False


def refused_permissions(user) -> list[str]:
    """The permissions ("app_label.codename") this user was refused during the request, oldest first."""
    return list(getattr(user, REFUSED_ATTRIBUTE, []))


def missing_permission(user) -> str | None:
    """The permission a refusal was about: the last one refused.

    Django's pages ask "view or change?" and refuse when both are missing: the lesser one, view, is the one to name.
    """
    refused = refused_permissions(user)
    if not refused:
        return None
    last = refused[-1]
    app_label, _dot, codename = last.partition(".")
    if codename.startswith("change_"):
        view = f"{app_label}.view_{codename.removeprefix('change_')}"
        if view in refused:
            return view
    return last


def permission_label(permission: str) -> str:
    """The permission's name as Django shows it ("Can change program settings"), else its code."""
    app_label, _dot, codename = permission.partition(".")
    found = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
    return found.name if found else permission


def permission_holders(permission: str) -> tuple[list[str], list[str]]:
    """Who has a permission: (the roles that grant it, up to five active staff users who hold it), by name.

    Superusers hold every permission, so they are among the users.
    """
    app_label, _dot, codename = permission.partition(".")
    found = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
    if found is None:
        return [], []
    roles = list(Group.objects.filter(permissions=found).order_by("name").values_list("name", flat=True))
    users = (
        get_user_model()
        .objects.filter(is_active=True, is_staff=True)
        .filter(Q(is_superuser=True) | Q(groups__permissions=found) | Q(user_permissions=found))
        .distinct()
        .order_by("username")
    )
    return roles, [user.get_username() for user in users[:HOLDERS_SHOWN]]
