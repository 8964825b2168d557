from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django_otp.admin import OTPAdminSite


class PlatformAdminSite(OTPAdminSite):
    """The operators' admin: staff only, and only after two-factor sign-in."""

    site_header = "ESP operations"
    site_title = "ESP operations"
    index_title = "Platform"

    def login(self, request, extra_context=None):
        if request.user.is_authenticated:
            # Signed in but not staff (unverified staff are stopped by middleware first).
            raise PermissionDenied("The operator admin is for platform staff.")
        # One sign-in page for everyone, with its throttling and two-factor step.
        return redirect_to_login(
            request.GET.get("next") or reverse("admin:index"), login_url=reverse("accounts:login")
        )
