"""The app's own URLs plus one trivial view, for bench_webhooks' floor: what Django itself answers per second under
the same server, middleware and settings, for a POST of the same size that does nothing (no signature, no database).
Served only by the bench (devtools.bench_wsgi); production serves config.urls."""

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import handler403  # noqa: F401 - the app's refusal page too
from config.urls import urlpatterns as app_urlpatterns

TRIVIAL_PATH = "/bench/trivial/"


@csrf_exempt
def trivial(request):
    request.body  # noqa: B018 - read the body, as the webhook endpoints do
    return HttpResponse(b"ok", content_type="text/plain")


urlpatterns = [*app_urlpatterns, path(TRIVIAL_PATH.strip("/") + "/", trivial)]
