from django.contrib import admin

from .models import Tier, TierChange

admin.site.register([Tier, TierChange])
