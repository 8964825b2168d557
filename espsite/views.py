from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from espsite.health import health_report


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    serving, report = health_report()
    return JsonResponse(report, status=200 if serving else 503)
