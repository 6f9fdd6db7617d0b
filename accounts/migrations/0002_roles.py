"""The two roles of the back office, as groups with Django permissions.

Support agent: view members and their activity, adjust points (up to the program's per-action limit, enforced by the
ledger service), give rewards, reverse entries, approve or reject pending points, credit conversions by hand; view the
catalog and the settings, change nothing there.
Program manager: everything in the program's apps (settings, catalog, imports, backfills, customer groups), and
adjustments beyond the support-agent limit.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

SUPPORT_AGENT = "Support agent"
PROGRAM_MANAGER = "Program manager"
MANAGER_APPS = ["loyalty", "tiers", "imports"]
AGENT_PERMISSIONS = [
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
    ("loyalty", "view_rewardtoken"),
    ("loyalty", "view_programsettings"),
    ("loyalty", "view_customergroup"),
    ("tiers", "view_tier"),
    ("tiers", "view_tierchange"),
]


def create_all_permissions(apps):
    """Permissions are made after migrate by a signal; the roles need them now."""
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None


def create_roles(apps, schema_editor):
    create_all_permissions(apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    agent, _ = Group.objects.get_or_create(name=SUPPORT_AGENT)
    for app_label, codename in AGENT_PERMISSIONS:
        agent.permissions.add(*Permission.objects.filter(content_type__app_label=app_label, codename=codename))
    manager, _ = Group.objects.get_or_create(name=PROGRAM_MANAGER)
    manager.permissions.add(*Permission.objects.filter(content_type__app_label__in=MANAGER_APPS))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=[SUPPORT_AGENT, PROGRAM_MANAGER]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("imports", "0002_backfillrun"),
        ("loyalty", "0004_customer_groups_rfm"),
        ("tiers", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
