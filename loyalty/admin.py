from django.contrib import admin

from .models import Coupon, EarnRule, LedgerEntry, Member, Order, ProgramSettings, Reward

admin.site.register([Member, LedgerEntry, Reward, Coupon, EarnRule, Order, ProgramSettings])
