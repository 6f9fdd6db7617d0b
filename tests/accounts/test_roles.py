"""The roles made by the data migration, kept in step with later models."""

import pytest
from django.contrib.auth.models import Group

from accounts.roles import roles_sync

pytestmark = pytest.mark.django_db


def test_program_manager_has_every_permission_of_the_program_apps_including_later_models():
    manager = Group.objects.get(name="Program manager")
    codenames = set(manager.permissions.values_list("codename", flat=True))
    assert {"change_programsettings", "add_importjob", "view_webhookevent", "adjust_points_unlimited"} <= codenames


def test_support_agent_can_adjust_but_not_change_settings_or_go_past_the_limit():
    agent = Group.objects.get(name="Support agent")
    codenames = set(agent.permissions.values_list("codename", flat=True))
    assert {"view_member", "adjust_points", "give_reward", "reverse_entry", "approve_pending"} <= codenames
    assert not codenames & {"change_programsettings", "adjust_points_unlimited", "add_importjob", "delete_member"}


def test_sync_restores_a_permission_the_manager_lost():
    manager = Group.objects.get(name="Program manager")
    manager.permissions.remove(*manager.permissions.filter(codename="change_tier"))
    roles_sync()
    assert manager.permissions.filter(codename="change_tier").exists()


def test_exports_are_the_program_managers_not_the_support_agents():
    exports = {"export_member", "export_ledgerentry", "export_coupon"}
    manager = set(Group.objects.get(name="Program manager").permissions.values_list("codename", flat=True))
    agent = set(Group.objects.get(name="Support agent").permissions.values_list("codename", flat=True))
    assert exports <= manager
    assert not exports & agent
