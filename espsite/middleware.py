from espsite.views import healthz


class HealthzMiddleware:
    """Answer /healthz before host validation: load balancers probe nodes by address."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == "/healthz" and request.method in ("GET", "HEAD"):
            return healthz(request)
        return self.get_response(request)
