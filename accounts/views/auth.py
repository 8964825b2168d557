"""Signing in and out, sign-up, passwords and two-factor authentication."""

import time

import django_otp
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from accounts import services, throttles, two_factor
from accounts.errors import ApplicationError
from accounts.forms import LoginForm, SignupForm, TokenForm, TwoFactorDisableForm
from accounts.mail import mail_enqueue
from accounts.models import User

PENDING_SESSION_KEY = "accounts.pending_two_factor"
PENDING_MAX_AGE_SECONDS = 300
WRONG_CODE_MESSAGE = "That code is not valid. Codes change every 30 seconds."
THROTTLED_MESSAGE = "Too many failed sign-in attempts. Wait a few minutes, or reset your password."


def _safe_next(request: HttpRequest, default: str = "home") -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse_lazy(default)


@sensitive_post_parameters("password")
@never_cache
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect(_safe_next(request))
    form = LoginForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        email, ip = form.cleaned_data["email"], request.client_ip
        if not throttles.login_attempt_begin(email=email, ip=ip):
            form.add_error(None, THROTTLED_MESSAGE)
            status = 429
        else:
            user = authenticate(request, username=email, password=form.cleaned_data["password"])
            if user is None:
                form.add_error(None, "That email address and password do not match an account.")
            elif two_factor.totp_has_device(user=user):
                # The attempt stays counted until the code is right too: re-entering the
                # password must not reset the budget for guessing codes.
                request.session[PENDING_SESSION_KEY] = {
                    "user_id": user.pk,
                    "backend": user.backend,
                    "at": time.time(),
                    "next": str(_safe_next(request)),
                }
                return redirect("accounts:login_verify")
            else:
                throttles.login_attempt_succeeded(email=email, ip=ip)
                login(request, user)
                return redirect(_safe_next(request))
    return render(
        request,
        "accounts/login.html",
        {"form": form, "next": request.GET.get("next", "")},
        status=status,
    )


@sensitive_post_parameters("token")
@never_cache
@require_http_methods(["GET", "POST"])
def login_verify(request: HttpRequest) -> HttpResponse:
    """Second step for accounts with an authenticator: the six-digit code."""
    pending = request.session.get(PENDING_SESSION_KEY)
    if not pending or time.time() - pending["at"] > PENDING_MAX_AGE_SECONDS:
        request.session.pop(PENDING_SESSION_KEY, None)
        messages.info(request, "Sign in again to continue.")
        return redirect("accounts:login")
    user = User.objects.filter(pk=pending["user_id"], is_active=True).first()
    if user is None:
        request.session.pop(PENDING_SESSION_KEY, None)
        return redirect("accounts:login")
    form = TokenForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        device, status = _device_for_code(request, form, user)
        if device is not None:
            request.session.pop(PENDING_SESSION_KEY, None)
            login(request, user, backend=pending["backend"])
            django_otp.login(request, device)
            return redirect(pending["next"])
    return render(request, "accounts/login_verify.html", {"form": form}, status=status)


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    messages.success(request, "You are signed out.")
    return redirect("accounts:login")


@sensitive_post_parameters("password")
@never_cache
@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user, workspace = services.user_signup(
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password"],
                full_name=form.cleaned_data["full_name"],
                workspace_name=form.cleaned_data["workspace_name"],
            )
        except ApplicationError as error:
            form.add_error("email", error.message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(
                request,
                f"Welcome! {workspace.name} is waiting for review by our team; you can set "
                "it up meanwhile.",
            )
            return redirect("accounts:dashboard", workspace_slug=workspace.slug)
    return render(request, "accounts/signup.html", {"form": form})


@sensitive_post_parameters("password", "token")
@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def two_factor_settings(request: HttpRequest) -> HttpResponse:
    """Enrol an authenticator app, or remove it (staff must keep one)."""
    user = request.user
    if two_factor.totp_has_device(user=user):
        if not request.user.is_verified():
            return _two_factor_reverify(request)
        form = TwoFactorDisableForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            if not user.check_password(form.cleaned_data["password"]):
                form.add_error("password", "That is not your password.")
            else:
                try:
                    two_factor.totp_disable(user=user)
                except ApplicationError as error:
                    form.add_error(None, error.message)
                else:
                    messages.success(request, "Two-factor sign-in is off.")
                    return redirect("accounts:two_factor")
        return render(request, "accounts/two_factor_enabled.html", {"form": form})

    device = two_factor.totp_device_pending(user=user)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            device = two_factor.totp_confirm(user=user, token=form.cleaned_data["token"])
        except ApplicationError as error:
            form.add_error("token", error.message)
        else:
            django_otp.login(request, device)
            messages.success(request, "Two-factor sign-in is on. You will need a code each time.")
            return redirect("home")
    return render(
        request,
        "accounts/two_factor_setup.html",
        {
            "form": form,
            "qr_data_uri": two_factor.totp_qr_data_uri(device),
            "secret": two_factor.totp_secret_base32(device),
            "required": user.is_staff,
        },
    )


def _two_factor_reverify(request: HttpRequest) -> HttpResponse:
    """A session signed in by password alone, with a device enrolled: ask for a code."""
    form = TokenForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        device, status = _device_for_code(request, form, request.user)
        if device is not None:
            django_otp.login(request, device)
            return redirect("home")
    return render(request, "accounts/login_verify.html", {"form": form}, status=status)


def _device_for_code(request: HttpRequest, form: TokenForm, user: User):
    """(device, status): the device that accepts the code, or None with the form's error.

    Wrong codes count against the account and the address like wrong passwords do.
    """
    if not throttles.login_attempt_begin(email=user.email, ip=request.client_ip):
        form.add_error(None, THROTTLED_MESSAGE)
        return None, 429
    try:
        device = two_factor.totp_match(user=user, token=form.cleaned_data["token"])
    except ApplicationError as error:
        form.add_error("token", error.message)
        return None, 200
    if device is None:
        form.add_error("token", WRONG_CODE_MESSAGE)
        return None, 200
    throttles.login_attempt_succeeded(email=user.email, ip=request.client_ip)
    return device, 200


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("home")

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password has been changed.")
        return response


password_change = PasswordChangeView.as_view()


class PasswordResetForm(auth_forms.PasswordResetForm):
    """Django's reset form, its mail sent by a worker and limited per address and client."""

    client_ip: str | None = None

    def send_mail(
        self,
        subject_template_name,
        email_template_name,
        context,
        from_email,
        to_email,
        html_email_template_name=None,
    ):
        allowed = throttles.rate_limit_hit(
            kind="password-reset-address",
            value=to_email,
            limit=settings.PASSWORD_RESETS_PER_ADDRESS_PER_HOUR,
            window_seconds=3600,
        )
        if self.client_ip:
            allowed &= throttles.rate_limit_hit(
                kind="password-reset-ip",
                value=self.client_ip,
                limit=settings.PASSWORD_RESETS_PER_IP_PER_HOUR,
                window_seconds=3600,
            )
        if not allowed:  # the page says the same either way
            return
        subject = " ".join(render_to_string(subject_template_name, context).split())
        text = render_to_string(email_template_name, context)
        html = (
            render_to_string(html_email_template_name, context) if html_email_template_name else ""
        )
        mail_enqueue(subject=subject, text=text, html=html, to=[to_email])


class PasswordResetView(auth_views.PasswordResetView):
    form_class = PasswordResetForm

    def form_valid(self, form):
        # Links in mail are built from BASE_URL, never from the request's Host header.
        self.extra_email_context = {"base_url": settings.BASE_URL}
        form.client_ip = self.request.client_ip
        return super().form_valid(form)


password_reset = PasswordResetView.as_view(
    template_name="accounts/password_reset.html",
    email_template_name="accounts/email/password_reset_message.txt",
    html_email_template_name="accounts/email/password_reset_message.html",
    subject_template_name="accounts/email/password_reset_subject.txt",
    success_url=reverse_lazy("accounts:password_reset_done"),
)
password_reset_done = auth_views.PasswordResetDoneView.as_view(
    template_name="accounts/password_reset_done.html"
)
password_reset_confirm = auth_views.PasswordResetConfirmView.as_view(
    template_name="accounts/password_reset_confirm.html",
    success_url=reverse_lazy("accounts:password_reset_complete"),
)
password_reset_complete = auth_views.PasswordResetCompleteView.as_view(
    template_name="accounts/password_reset_complete.html"
)
