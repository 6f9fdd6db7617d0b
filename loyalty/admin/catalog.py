from django.contrib import admin

from ..models import Coupon, EarnRule, Order, ProgramSettings, Reward

admin.site.register([Reward, Coupon, EarnRule, Order, ProgramSettings])
