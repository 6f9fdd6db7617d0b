from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Loyalty back office"
admin.site.site_title = "Loyalty back office"
admin.site.index_title = "Program"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/", include("webhooks.urls")),
]
