from django.urls import re_path

from . import views

app_name = "webhooks"

# With or without the trailing slash: a store's settings page makes it easy to leave it out, and a redirect would
# turn the POST into a GET.
urlpatterns = [
    re_path(r"^shopify/?$", views.shopify, name="shopify"),
    re_path(r"^woocommerce/?$", views.woocommerce, name="woocommerce"),
]
