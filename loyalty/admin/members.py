from django.contrib import admin

from ..models import Member


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = ["email", "first_name", "last_name", "available_points", "pending_points", "lifetime_points", "tier"]
    search_fields = ["email"]
