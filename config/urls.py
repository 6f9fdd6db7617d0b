from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Loyalty back office"
admin.site.site_title = "Loyalty back office"
admin.site.index_title = "Program"

# Every refusal gets the admin's page that names the missing permission and who has it.
handler403 = "loyalty.admin.refusals.permission_denied"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/", include("webhooks.urls")),
]
