"""The back office's two roles, kept in step with the models after every migrate.

The data migration 0002_roles creates the groups; models added later (webhook events, customer groups, backfill runs)
bring new permissions, which this module grants after each migrate, so a program manager always has every permission of
the program's apps without a new data migration per model. It only adds: a permission a merchant removed from a role
by hand comes back at the next migrate, so customise roles with new groups instead.
"""

SUPPORT_AGENT = "Support agent"
PROGRAM_MANAGER = "Program manager"
MANAGER_APPS = ("loyalty", "tiers", "imports", "webhooks")
# Not the exports (loyalty.export_member, export_ledgerentry, export_coupon): a support agent looks members up one at a
# time; a file of every member, entry and coupon code is the program manager's.
AGENT_PERMISSIONS = (
    ("loyalty", "view_member"),
    ("loyalty", "adjust_points"),
    ("loyalty", "give_reward"),
    ("loyalty", "view_ledgerentry"),
    ("loyalty", "reverse_entry"),
    ("loyalty", "approve_pending"),
    ("loyalty", "view_coupon"),
    ("loyalty", "view_reward"),
    ("loyalty", "view_earnrule"),
    ("loyalty", "view_order"),
    ("loyalty", "view_shortfall"),
    ("loyalty", "view_rewardtoken"),
    ("loyalty", "view_programsettings"),
    ("loyalty", "view_customergroup"),
    ("tiers", "view_tier"),
    ("tiers", "view_tierchange"),
)


def roles_sync(**kwargs) -> None:
    """Give each role the permissions it should have (a post_migrate receiver; idempotent)."""
    from django.contrib.auth.models import Group, Permission
    from django.db.models import Q

    manager = Group.objects.filter(name=PROGRAM_MANAGER).first()
    if manager:
        manager.permissions.add(*Permission.objects.filter(content_type__app_label__in=MANAGER_APPS))
    agent = Group.objects.filter(name=SUPPORT_AGENT).first()
    if agent:
        wanted = Q(pk__in=[])
        for app_label, codename in AGENT_PERMISSIONS:
            wanted |= Q(content_type__app_label=app_label, codename=codename)
        agent.permissions.add(*Permission.objects.filter(wanted))
