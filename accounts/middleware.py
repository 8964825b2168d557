from django.conf import settings
from django.shortcuts import redirect
from django.urls import reverse

from accounts.request_ip import client_ip, current_client_ip


class ClientIpMiddleware:
    """Sets request.client_ip from REMOTE_ADDR or, behind trusted proxies, X-Forwarded-For."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.client_ip = client_ip(request.META, trusted_proxies=settings.TRUSTED_PROXIES)
        token = current_client_ip.set(request.client_ip)
        try:
            return self.get_response(request)
        finally:
            current_client_ip.reset(token)


class StaffTwoFactorMiddleware:
    """Staff must complete two-factor sign-in before anything else; they may set it up."""

    allowed_url_names = (
        "accounts:two_factor",
        "accounts:login_verify",
        "accounts:logout",
    )

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.is_staff and not user.is_verified():
            allowed = {reverse(name) for name in self.allowed_url_names}
            if request.path not in allowed and not request.path.startswith(settings.STATIC_URL):
                return redirect("accounts:two_factor")
        return self.get_response(request)
